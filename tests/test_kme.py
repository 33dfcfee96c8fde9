"""ETSI GS QKD 014 KME: the API, identities, limits and TLS, on real sockets, real TLS
(trustme certificates) and real SQLite stores. The KME pair runs in-process (one event loop in
a thread); the fault tests with processes are in test_kme_faults.py."""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kme_support import InProcessPair, PairFiles, make_pair_files, store_view
from qrepeater.errors import AuthenticationError, ParameterError, TransportError
from qrepeater.service.client import Client, KMERequestError, client_ssl_context
from qrepeater.service.kme import KMEConfig, openapi_document, sae_id_of

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessPair]:
    files = make_pair_files(tmp_path_factory.mktemp("kme"), blocks=8, keys_per_block=128)
    with InProcessPair(files, max_key_per_request=16) as p:
        yield p


def client(pair: InProcessPair, which: str, sae: str, **kw: Any) -> Client:
    return Client(pair.url(which), **pair.files.certs.client_kwargs(sae), **kw)


def raw_request(
    pair: InProcessPair,
    which: str,
    sae: str,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One HTTPS request with full control of path, headers and body."""
    ctx = client_ssl_context(**pair.files.certs.client_kwargs(sae))
    conn = http.client.HTTPSConnection("127.0.0.1", pair.port(which), context=ctx, timeout=30)
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body))
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


# ---- the round trip ---------------------------------------------------------------------------
def test_master_at_leader_slave_at_follower(pair: InProcessPair) -> None:
    a = client(pair, "a", "sae-a1")
    b = client(pair, "b", "sae-b1")
    before_a = a.status("sae-b1").stored_key_count
    before_b = b.status("sae-a1").stored_key_count
    keys = a.enc_keys("sae-b1", number=5, size=256)
    assert len(keys) == 5
    assert len({k.key_id for k in keys}) == 5
    assert all(len(k.key) == 32 for k in keys)
    # stored_key_count drops by exactly what was delivered, on both KMEs
    assert a.status("sae-b1").stored_key_count == before_a - 5
    assert b.status("sae-a1").stored_key_count == before_b - 5
    got = b.dec_keys("sae-a1", [k.key_id for k in keys])
    assert [g.key_id for g in got] == [k.key_id for k in keys]
    assert [g.key for g in got] == [k.key for k in keys]
    assert b.status("sae-a1").stored_key_count == before_b - 5
    # a key id fetched once is never returned again
    with pytest.raises(KMERequestError) as err:
        b.dec_keys("sae-a1", [keys[0].key_id])
    assert err.value.status == 400


def test_master_at_follower_short_keys(pair: InProcessPair) -> None:
    b = client(pair, "b", "sae-b2")
    a = client(pair, "a", "sae-a2")
    keys = b.enc_keys("sae-a2", number=3, size=128)
    assert all(len(k.key) == 16 for k in keys)
    got = a.dec_keys("sae-b2", [k.key_id for k in keys])
    assert [g.key for g in got] == [k.key for k in keys]


def test_same_bytes_as_the_stores_committed(pair: InProcessPair) -> None:
    """The delivered key is the first ``size`` bits of the stored key with that id."""
    import numpy as np

    a = client(pair, "a", "sae-a1")
    (key,) = a.enc_keys("sae-b1", number=1, size=64)
    rng = np.random.default_rng(1)  # fill_store's content
    blocks = [rng.bytes(32 * 128) for _ in range(8)]
    from qrepeater.qkdpp.keystore import key_id

    where = {
        key_id("run-test", b, 256 * i): blocks[b][32 * i : 32 * i + 32]
        for b in range(8)
        for i in range(128)
    }
    assert key.key == where[key.key_id][:8]


def test_get_forms(pair: InProcessPair) -> None:
    status, body = raw_request(
        pair, "a", "sae-a1", "GET", "/api/v1/keys/sae-b1/enc_keys?number=2&size=64"
    )
    assert status == 200
    assert len(body["keys"]) == 2
    ids = [k["key_ID"] for k in body["keys"]]
    for kid, k in zip(ids, body["keys"], strict=True):
        status, got = raw_request(
            pair, "b", "sae-b1", "GET", f"/api/v1/keys/sae-a1/dec_keys?key_ID={kid}"
        )
        assert status == 200
        assert got["keys"] == [{"key_ID": kid, "key": k["key"]}]
        assert len(base64.b64decode(got["keys"][0]["key"])) == 8


def test_status_fields(pair: InProcessPair) -> None:
    status, body = raw_request(pair, "a", "sae-a1", "GET", "/api/v1/keys/sae-b1/status")
    assert status == 200
    assert body == {
        "source_KME_ID": "kme-a",
        "target_KME_ID": "kme-b",
        "master_SAE_ID": "sae-a1",
        "slave_SAE_ID": "sae-b1",
        "key_size": 256,
        "stored_key_count": body["stored_key_count"],
        "max_key_count": 1_000_000,
        "max_key_per_request": 16,
        "max_key_size": 256,
        "min_key_size": 8,
        "max_SAE_ID_count": 0,
        "status_extension": {
            "peer_link_up": True,
            "peer_link_frames_left": body["status_extension"]["peer_link_frames_left"],
        },
    }
    assert 0 < body["status_extension"]["peer_link_frames_left"] < (1 << 20) // 16
    assert body["stored_key_count"] == len(
        [v for v in store_view(pair.files.store_a).values() if v[0] == "available"]
    )


# ---- identities -------------------------------------------------------------------------------
def test_caller_not_the_slave_gets_401_and_nothing_is_released(pair: InProcessPair) -> None:
    a = client(pair, "a", "sae-a1")
    keys = a.enc_keys("sae-b1", number=2)
    ids = [k.key_id for k in keys]
    intruder = client(pair, "b", "sae-b2")
    with pytest.raises(KMERequestError) as err:
        intruder.dec_keys("sae-a1", ids)
    assert err.value.status == 401
    assert {d["key_ID"] for d in err.value.details} == set(ids)
    # wrong master in the URL: 401 as well
    with pytest.raises(KMERequestError) as err:
        client(pair, "b", "sae-b1").dec_keys("sae-a2", ids)
    assert err.value.status == 401
    # the slave fetching from the master's KME: 401 (there they are the master's keys)
    with pytest.raises(KMERequestError) as err:
        client(pair, "a", "sae-b1").dec_keys("sae-a1", ids)
    assert err.value.status == 401
    # nothing was released: the rightful slave still gets them
    got = client(pair, "b", "sae-b1").dec_keys("sae-a1", ids)
    assert [g.key for g in got] == [k.key for k in keys]


def test_batch_with_one_foreign_id_releases_none(pair: InProcessPair) -> None:
    a1, a2 = client(pair, "a", "sae-a1"), client(pair, "a", "sae-a2")
    mine = a1.enc_keys("sae-b1", number=3)
    theirs = a2.enc_keys("sae-b2", number=1)
    b1 = client(pair, "b", "sae-b1")
    batch = [mine[0].key_id, theirs[0].key_id, mine[1].key_id]
    with pytest.raises(KMERequestError) as err:
        b1.dec_keys("sae-a1", batch)
    assert err.value.status == 401
    assert [d["key_ID"] for d in err.value.details] == [theirs[0].key_id]
    view = store_view(pair.files.store_b)
    assert all(view[k.key_id][0] == "reserved" for k in mine)
    assert view[theirs[0].key_id][0] == "reserved"
    # unknown ids are foreign too
    with pytest.raises(KMERequestError) as err:
        b1.dec_keys("sae-a1", [mine[2].key_id, "00000000-0000-4000-8000-000000000000"])
    assert err.value.status == 401
    got = b1.dec_keys("sae-a1", [k.key_id for k in mine])
    assert [g.key for g in got] == [k.key for k in mine]
    assert client(pair, "b", "sae-b2").dec_keys("sae-a2", [theirs[0].key_id])[0].key == (
        theirs[0].key
    )


def test_spoofed_sae_id_in_header_or_body_is_ignored(pair: InProcessPair) -> None:
    spoof = {"SAE_ID": "sae-a1", "X-SAE-ID": "sae-a1", "X-Forwarded-Client-Cert": "CN=sae-a1"}
    status, body = raw_request(
        pair, "a", "sae-x", "GET", "/api/v1/keys/sae-b1/status", headers=spoof
    )
    assert status == 200
    assert body["master_SAE_ID"] == "sae-x"
    # the keys are reserved for master sae-x (its certificate), not the claimed sae-a1
    status, body = raw_request(
        pair,
        "a",
        "sae-x",
        "POST",
        "/api/v1/keys/sae-b1/enc_keys",
        body={"number": 1, "master_SAE_ID": "sae-a1", "SAE_ID": "sae-a1"},
        headers=spoof,
    )
    assert status == 200
    kid = body["keys"][0]["key_ID"]
    assert store_view(pair.files.store_a)[kid] == ("delivered", "sae-x", "sae-b1")
    # a slave claiming another identity in a header cannot take sae-b1's keys
    status, body = raw_request(
        pair,
        "b",
        "sae-b2",
        "POST",
        "/api/v1/keys/sae-x/dec_keys",
        body={"key_IDs": [{"key_ID": kid}], "slave_SAE_ID": "sae-b1"},
        headers={"SAE_ID": "sae-b1", "X-SAE-ID": "sae-b1"},
    )
    assert status == 401
    assert set(body) <= {"message", "details"}
    assert client(pair, "b", "sae-b1").dec_keys("sae-x", [kid])[0].key_id == kid


def test_sae_id_of_certificate_subject() -> None:
    cert = {"subject": ((("countryName", "AT"),), (("commonName", "sae-7"),))}
    assert sae_id_of(cert) == "sae-7"
    two = {"subject": ((("commonName", "a"),), (("commonName", "b"),))}
    for bad in (None, {}, {"subject": ((("organizationName", "x"),),)}, two):
        with pytest.raises(Exception, match="certificate") as err:
            sae_id_of(bad)
        assert getattr(err.value, "status", None) == 401


# ---- limits -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "what"),
    [
        ({"number": 17}, "max_key_per_request"),
        ({"number": 0}, "number"),
        ({"number": "2"}, "number"),
        ({"number": 1.5}, "number"),
        ({"size": 100}, "multiple of 8"),
        ({"size": 264}, "size"),
        ({"size": 0}, "size"),
        ({"size": -8}, "size"),
        ({"extension_mandatory": [{"x": 1}]}, "mandatory"),
        ({"additional_slave_SAE_IDs": ["sae-b2"]}, "max_SAE_ID_count"),
        ({"extension_optional": [1]}, "extension_optional"),
        ([1, 2], "object"),
        (b"{not json", "JSON"),
        (b"null", "object"),
    ],
)
def test_bad_key_requests_are_400_and_release_nothing(
    pair: InProcessPair, body: Any, what: str
) -> None:
    before = store_view(pair.files.store_a)
    status, answer = raw_request(pair, "a", "sae-a1", "POST", "/api/v1/keys/sae-b1/enc_keys", body)
    assert status == 400
    assert what in answer["message"]
    assert set(answer) <= {"message", "details"}
    assert store_view(pair.files.store_a) == before


@pytest.mark.parametrize(
    "query", ["number=17", "number=x", "size=7", "size=512", "number=1&size=abc"]
)
def test_bad_get_key_requests_are_400(pair: InProcessPair, query: str) -> None:
    status, answer = raw_request(
        pair, "a", "sae-a1", "GET", f"/api/v1/keys/sae-b1/enc_keys?{query}"
    )
    assert status == 400
    assert "message" in answer


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"key_IDs": []},
        {"key_IDs": [{"key_ID": "not-a-uuid"}]},
        {"key_IDs": ["00000000-0000-4000-8000-000000000000"]},
        {"key_IDs": [{"key_ID": "00000000-0000-4000-8000-000000000000"}] * 2},
        {"key_IDs": [{"key_ID": f"00000000-0000-4000-8000-{i:012d}"} for i in range(17)]},
    ],
)
def test_bad_dec_requests_are_400(pair: InProcessPair, body: Any) -> None:
    status, answer = raw_request(pair, "b", "sae-b1", "POST", "/api/v1/keys/sae-a1/dec_keys", body)
    assert status == 400
    assert "message" in answer


def test_bad_sae_id_in_path_is_400(pair: InProcessPair) -> None:
    status, answer = raw_request(pair, "a", "sae-a1", "GET", "/api/v1/keys/-bad/status")
    assert status == 400
    assert "SAE_ID" in answer["message"]


def test_empty_store_503_never_a_partial_list(tmp_path: Path) -> None:
    files = make_pair_files(tmp_path, blocks=1, keys_per_block=5)
    with InProcessPair(files) as p:
        a = client(p, "a", "sae-a1")
        b = client(p, "b", "sae-b1")
        for c, slave in ((a, "sae-b1"), (b, "sae-a1")):
            with pytest.raises(KMERequestError) as err:
                c.enc_keys(slave, number=6)
            assert err.value.status == 503
            assert err.value.message == "not enough keys"
        assert a.status("sae-b1").stored_key_count == 5
        assert b.status("sae-a1").stored_key_count == 5
        assert len(a.enc_keys("sae-b1", number=3)) == 3
        assert len(b.enc_keys("sae-a1", number=2)) == 2
        for c, slave in ((a, "sae-b1"), (b, "sae-a1")):
            with pytest.raises(KMERequestError) as err:
                c.enc_keys(slave, number=1)
            assert err.value.status == 503
            assert c.status(slave).stored_key_count == 0


def test_config_validation() -> None:
    for bad in (
        {"kme_id": ""},
        {"kme_id": "a/b"},
        {"kme_id": "k", "key_size": 100},
        {"kme_id": "k", "max_key_per_request": 0},
        {"kme_id": "k", "min_key_size": 4},
        {"kme_id": "k", "peer_timeout_s": 0},
    ):
        with pytest.raises(ParameterError):
            KMEConfig(**bad)


def test_openapi_document_is_package_data() -> None:
    doc = openapi_document()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {
        "/api/v1/keys/{slave_SAE_ID}/status",
        "/api/v1/keys/{slave_SAE_ID}/enc_keys",
        "/api/v1/keys/{master_SAE_ID}/dec_keys",
    }
    status = doc["components"]["schemas"]["Status"]
    assert set(status["required"]) == {
        "source_KME_ID", "target_KME_ID", "master_SAE_ID", "slave_SAE_ID", "key_size",
        "stored_key_count", "max_key_count", "max_key_per_request", "max_key_size",
        "min_key_size", "max_SAE_ID_count",
    }  # fmt: skip
    own = openapi_document(max_key_per_request=16, max_key_size=128)
    assert own["components"]["schemas"]["KeyRequest"]["properties"]["number"]["maximum"] == 16


# ---- concurrency ------------------------------------------------------------------------------
def test_concurrent_masters_get_disjoint_keys(pair: InProcessPair) -> None:
    plan = [("a", "sae-a1", "sae-b1"), ("a", "sae-a2", "sae-b2"), ("b", "sae-b2", "sae-a1")]
    results: dict[str, list[Any]] = {}
    errors: list[BaseException] = []

    def master(which: str, sae: str, slave: str) -> None:
        try:
            with client(pair, which, sae) as c:
                results[sae] = [k for _ in range(12) for k in c.enc_keys(slave, number=3)]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=master, args=p) for p in plan]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    ids = [k.key_id for keys in results.values() for k in keys]
    assert len(ids) == 3 * 36
    assert len(set(ids)) == len(ids)  # disjoint
    for which, sae, slave in plan:
        peer = "b" if which == "a" else "a"
        got = client(pair, peer, slave).dec_keys(sae, [k.key_id for k in results[sae]][:16])
        assert [g.key for g in got] == [k.key for k in results[sae]][:16]


# ---- TLS --------------------------------------------------------------------------------------
def _handshake(
    pair: InProcessPair, *, cert: str | None, version: ssl.TLSVersion | None = None
) -> str:
    """Handshake and one request as an SAE; returns the negotiated TLS version.

    Raises ``HandshakeRefusedError`` if the TLS handshake itself fails, ``ConnectionError`` if the
    connection fails after it without any HTTP answer (the TLS 1.3 way of refusing a client
    certificate: the server's alert follows the client's Finished message).
    """
    ctx = ssl.create_default_context(cafile=str(pair.files.certs.ca))
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    if cert is not None:
        c, k = pair.files.certs.pair(cert)
        ctx.load_cert_chain(str(c), str(k))
    with socket.create_connection(("127.0.0.1", pair.port("a")), timeout=10) as raw:
        tls = ctx.wrap_socket(raw, server_hostname="127.0.0.1", do_handshake_on_connect=False)
        try:
            tls.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            raise HandshakeRefusedError(str(exc)) from None
        negotiated = str(tls.version())
        try:
            tls.sendall(b"GET /api/v1/keys/sae-b1/status HTTP/1.1\r\nHost: x\r\n\r\n")
            data = tls.recv(65536)
        except (ssl.SSLError, OSError) as exc:
            raise ConnectionError(f"refused after the handshake: {exc}") from None
        finally:
            tls.close()
        if not data.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(f"answer: {data[:80]!r}")
        return negotiated


class HandshakeRefusedError(Exception):
    pass


@pytest.mark.parametrize("cert", [None, "foreign", "expired"])
def test_tls_refuses_bad_client_certificates(pair: InProcessPair, cert: str | None) -> None:
    # TLS 1.2: the handshake itself fails
    with pytest.raises(HandshakeRefusedError):
        _handshake(pair, cert=cert, version=ssl.TLSVersion.TLSv1_2)
    # TLS 1.3: the client's half of the handshake completes, then the server's alert (or close)
    # arrives in place of any HTTP byte
    with pytest.raises((HandshakeRefusedError, ConnectionError)) as err:
        _handshake(pair, cert=cert, version=ssl.TLSVersion.TLSv1_3)
    assert "HTTP/1.1" not in str(err.value)


def test_tls_12_and_13_work(pair: InProcessPair) -> None:
    assert _handshake(pair, cert="sae-a1", version=ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert _handshake(pair, cert="sae-a1", version=ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    for v in ("1.2", "1.3"):
        assert client(pair, "a", "sae-a1", tls_version=v).status("sae-b1").source_KME_ID == "kme-a"


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_11_is_refused(pair: InProcessPair) -> None:
    with pytest.raises((HandshakeRefusedError, ssl.SSLError, ValueError)):
        _handshake(pair, cert="sae-a1", version=ssl.TLSVersion.TLSv1_1)


def test_client_reports_transport_errors(pair: InProcessPair) -> None:
    c = Client(pair.url("a"), **pair.files.certs.client_kwargs("foreign"))
    with pytest.raises(TransportError):
        c.status("sae-b1")
    with pytest.raises(ParameterError):
        Client("http://127.0.0.1:1", **pair.files.certs.client_kwargs("sae-a1"))


# ---- interop: curl as the docs show -----------------------------------------------------------
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_with_client_certificate(pair: InProcessPair) -> None:
    cert, key = pair.files.certs.pair("sae-a1")
    ca = pair.files.certs.ca
    base = f"{pair.url('a')}/api/v1/keys/sae-b1"
    tls = ["--cert", str(cert), "--key", str(key), "--cacert", str(ca)]
    out = subprocess.run(
        ["curl", "-sS", "--fail", *tls, f"{base}/status"], capture_output=True, check=True
    )
    assert json.loads(out.stdout)["master_SAE_ID"] == "sae-a1"
    out = subprocess.run(
        ["curl", "-sS", "--fail", *tls, "-H", "Content-Type: application/json",
         "-d", '{"number": 2, "size": 256}', f"{base}/enc_keys"],
        capture_output=True, check=True,
    )  # fmt: skip
    keys = json.loads(out.stdout)["keys"]
    assert len(keys) == 2
    bcert, bkey = pair.files.certs.pair("sae-b1")
    ids = ",".join(json.dumps({"key_ID": k["key_ID"]}) for k in keys)
    out = subprocess.run(
        ["curl", "-sS", "--fail", "--cert", str(bcert), "--key", str(bkey), "--cacert", str(ca),
         "-H", "Content-Type: application/json", "-d", f'{{"key_IDs": [{ids}]}}',
         f"{pair.url('b')}/api/v1/keys/sae-a1/dec_keys"],
        capture_output=True, check=True,
    )  # fmt: skip
    assert json.loads(out.stdout)["keys"] == keys
    # without a client certificate curl fails at the handshake (exit 35 or 56), no HTTP status
    out = subprocess.run(
        ["curl", "-sS", "--cacert", str(ca), "-o", "/dev/null", "-w", "%{http_code}",
         f"{base}/status"],
        capture_output=True,
    )  # fmt: skip
    assert out.returncode != 0
    assert out.stdout in (b"000", b"")


# ---- CLI --------------------------------------------------------------------------------------
def test_cli_get_keys_and_status(pair: InProcessPair, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from qrepeater.cli import app

    runner = CliRunner()
    cert, key = pair.files.certs.pair("sae-a1")
    tls = ["--cert", str(cert), "--key", str(key), "--ca", str(pair.files.certs.ca)]
    res = runner.invoke(
        app,
        ["kme", "get-keys", "--url", pair.url("a"), *tls, "--slave", "sae-b1", "--number", "2",
         "--json", "--out", str(tmp_path / "keys.json")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    keys = json.loads(res.stdout)["keys"]
    assert len(keys) == 2
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600
    bcert, bkey = pair.files.certs.pair("sae-b1")
    res = runner.invoke(
        app,
        ["kme", "get-keys", "--url", pair.url("b"), "--cert", str(bcert), "--key", str(bkey),
         "--ca", str(pair.files.certs.ca), "--master", "sae-a1",
         *[x for k in keys for x in ("--key-id", k["key_ID"])], "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["keys"] == keys
    res = runner.invoke(
        app, ["kme", "status", "--url", pair.url("a"), *tls, "--slave", "sae-b1", "--json"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["target_KME_ID"] == "kme-b"
    # errors: one line, exit 2
    res = runner.invoke(
        app, ["kme", "get-keys", "--url", pair.url("a"), *tls, "--slave", "sae-b1",
              "--number", "99"],
    )  # fmt: skip
    assert res.exit_code == 2
    assert "max_key_per_request" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = runner.invoke(app, ["kme", "get-keys", "--url", pair.url("a"), *tls])
    assert res.exit_code == 2


def test_cli_auth_key(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from qrepeater.cli import app

    a, b = tmp_path / "a.auth", tmp_path / "b.auth"
    res = CliRunner().invoke(
        app, ["kme", "auth-key", "--out", str(a), "--peer-out", str(b), "--bytes", "4096", "--json"]
    )
    assert res.exit_code == 0, res.output
    assert a.read_bytes() == b.read_bytes()
    assert len(a.read_bytes()) == 4096
    assert a.stat().st_mode & 0o777 == 0o600
    res = CliRunner().invoke(app, ["kme", "auth-key", "--out", str(a), "--peer-out", str(b)])
    assert res.exit_code == 2  # never overwrites a key


def test_kme_link_with_a_different_auth_key_never_comes_up(tmp_path: Path) -> None:
    from kme_support import write_auth_key

    files = make_pair_files(tmp_path, blocks=1, keys_per_block=8)
    other = PairFiles(
        files.certs, files.store_a, files.store_b, write_auth_key(tmp_path / "x.auth"), []
    )
    p = InProcessPair(files, peer_timeout_s=0.5)
    p._thread.start()
    try:
        p.info["a"] = p._start("kme-a", store_path=files.store_a, peer_listen=("127.0.0.1", 0))
        p.files = other  # B gets another auth key
        p.info["b"] = p._start(
            "kme-b", store_path=files.store_b, peer_connect=("127.0.0.1", p.info["a"]["peer_port"])
        )
        p.files = files
        with pytest.raises(RuntimeError, match="did not come up"):
            p.wait_linked(timeout=2.0)
        with pytest.raises(KMERequestError) as err:
            client(p, "a", "sae-a1").enc_keys("sae-b1")
        assert err.value.status == 503
        assert err.value.message == "peer KME not connected"
        # refused before the store was touched: no key used up
        assert client(p, "a", "sae-a1").status("sae-b1").stored_key_count == 8
    finally:
        p.__exit__(None, None, None)


def test_keys_committed_at_one_node_only_are_not_used_up(tmp_path: Path) -> None:
    """Alice's node commits a block before Bob's does: until both stores hold it, enc_keys
    answers 503 and gives the keys back (both directions), then it works."""
    import numpy as np

    from kme_support import make_certs, write_auth_key
    from qrepeater.qkdpp.keystore import KeyStore

    certs = make_certs(tmp_path / "certs")
    store_a, store_b = tmp_path / "a.db", tmp_path / "b.db"
    block = np.random.default_rng(5).bytes(32 * 4)
    with KeyStore(store_a) as s:
        s.stage_block(run_id="r", block=0, key=block)
        s.commit_block(run_id="r", block=0)
    KeyStore(store_b).close()
    files = PairFiles(certs, store_a, store_b, write_auth_key(tmp_path / "l.auth"), [])
    with InProcessPair(files) as p:
        a, b = client(p, "a", "sae-a1"), client(p, "b", "sae-b1")
        for c, slave in ((a, "sae-b1"), (b, "sae-a1")):
            with pytest.raises(KMERequestError) as err:
                c.enc_keys(slave, number=2)
            assert err.value.status == 503
            assert "not yet committed" in err.value.message
        assert a.status("sae-b1").stored_key_count == 4  # given back, not used up
        assert store_view(store_a) == dict.fromkeys(store_view(store_a), ("available", None, None))
        with KeyStore(store_b) as s:  # Bob's node catches up
            s.stage_block(run_id="r", block=0, key=block)
            s.commit_block(run_id="r", block=0)
        keys = b.enc_keys("sae-a1", number=2)
        assert [k.key for k in a.dec_keys("sae-b1", [k.key_id for k in keys])] == [
            k.key for k in keys
        ]
        keys = a.enc_keys("sae-b1", number=2)
        assert [k.key for k in b.dec_keys("sae-a1", [k.key_id for k in keys])] == [
            k.key for k in keys
        ]
        assert a.status("sae-b1").stored_key_count == 0


# ---- crash recovery, step by step ---------------------------------------------------------------
def _manager(tmp: Path, role: str) -> Any:
    from kme_support import fill_store
    from qrepeater.qkdpp.keystore import KeyStore
    from qrepeater.service.kme import KeyManager
    from qrepeater.service.kme_ledger import Ledger

    store = tmp / f"{role}.db"
    fill_store(store, blocks=1, keys_per_block=8)
    return KeyManager(
        store=KeyStore(store),
        ledger=Ledger(tmp / f"{role}.kme", kme_role=role),
        config=KMEConfig(kme_id=f"kme-{role}"),
        role=role,  # type: ignore[arg-type]
    )


def test_recovery_leader_releases_unrecorded_reservations(tmp_path: Path) -> None:
    """Killed between the store's reservation and the ledger record: nobody saw those keys."""
    m = _manager(tmp_path, "leader")
    m.store.reserve(3, master_sae="m", slave_sae="s", request_id="r-lost")
    recs = m.store.reserve(2, master_sae="m", slave_sae="s", request_id="r-kept")
    ids = [r.key_id for r in recs]
    rid = "6a1f0d3e-1b8f-4c1e-9a43-5b0ef5a1c001"
    m.ledger.add_request(
        rid=rid, role="master", master_sae="m", slave_sae="s", number=2, size=256, key_ids=ids
    )
    out = m.recover()
    assert out == {"released": 3, "rereserved": 0, "pending": 1}
    assert m.store.available_count() == 6
    assert m.pending == {rid}  # to be confirmed with the follower, then consumed
    assert [m.store.get(k).state for k in ids] == ["reserved", "reserved"]


def test_recovery_follower_rereserves_and_asks_again(tmp_path: Path) -> None:
    """Killed between the ledger record and the store's reservation; and with an allocation
    asked of the leader whose answer never came."""
    m = _manager(tmp_path, "follower")
    ids = m.store.key_ids()[:2]
    m.ledger.add_request(
        rid="6a1f0d3e-1b8f-4c1e-9a43-5b0ef5a1c002",
        role="slave", master_sae="m", slave_sae="s", number=2, size=128, key_ids=ids,
    )  # fmt: skip
    asked = "6a1f0d3e-1b8f-4c1e-9a43-5b0ef5a1c003"
    m.ledger.add_request(
        rid=asked, role="master", master_sae="s2", slave_sae="m2", number=1, size=256
    )
    out = m.recover()
    assert out == {"released": 0, "rereserved": 2, "pending": 1}
    assert [(m.store.get(k).state, m.store.get(k).slave_sae) for k in ids] == [
        ("reserved", "s"),
        ("reserved", "s"),
    ]
    assert m.pending == {asked}
    assert m.recover()["rereserved"] == 0  # idempotent


def test_link_positions_never_reused_after_restart(tmp_path: Path) -> None:
    from qrepeater.service.kme_ledger import Ledger
    from qrepeater.service.kme_peer import COUNTER_BLOCK, LedgerPosition

    ledger = Ledger(tmp_path / "l.kme", kme_role="leader")
    pos = LedgerPosition(ledger)
    used = [pos.claim_send() for _ in range(5)]
    pos.consume_recv(7)
    assert used == [0, 1, 2, 3, 4]
    # killed here (no flush): a new process starts beyond every position it may have used
    again = LedgerPosition(ledger)
    assert again.claim_send() == COUNTER_BLOCK
    assert again.recv_next == 0  # receive positions are recorded lazily (see kme_peer)
    with pytest.raises(AuthenticationError, match="already used"):
        pos.consume_recv(3)  # below the receive position: a replay


def test_async_client(pair: InProcessPair) -> None:
    import asyncio

    from qrepeater.service.client import AsyncClient

    async def main() -> None:
        certs = pair.files.certs
        async with (
            AsyncClient(pair.url("b"), **certs.client_kwargs("sae-b1")) as master,
            AsyncClient(pair.url("a"), **certs.client_kwargs("sae-a1")) as slave,
        ):
            st = await master.status("sae-a1")
            assert (st.source_KME_ID, st.master_SAE_ID) == ("kme-b", "sae-b1")
            batches = await asyncio.gather(*(master.enc_keys("sae-a1", number=2) for _ in range(4)))
            ids = [k.key_id for b in batches for k in b]
            assert len(set(ids)) == 8
            got = await slave.dec_keys("sae-b1", ids)
            assert [g.key for g in got] == [k.key for b in batches for k in b]
            with pytest.raises(KMERequestError) as err:
                await slave.dec_keys("sae-b1", ids[:1])
            assert err.value.status == 400

    asyncio.run(main())


def test_cli_serve_bad_input_is_one_line(pair: InProcessPair, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from qrepeater.cli import app

    files = pair.files
    cert, key = files.certs.pair("kme-a")
    base = ["kme", "serve", "--store", str(tmp_path / "s.db"), "--cert", str(cert),
            "--key", str(key), "--ca", str(files.certs.ca), "--listen", "127.0.0.1:0"]  # fmt: skip
    loose = tmp_path / "loose.auth"
    loose.write_bytes(files.auth.read_bytes())
    loose.chmod(0o644)
    busy = f"127.0.0.1:{pair.port('a')}"
    cases = [
        (["--auth-key", str(files.auth)], "exactly one"),
        (["--auth-key", str(files.auth), "--peer-listen", "x", "--peer-connect", "y"], "one of"),
        (["--auth-key", str(tmp_path / "none"), "--peer-listen", "127.0.0.1:0"], "no such file"),
        (["--auth-key", str(loose), "--peer-listen", "127.0.0.1:0"], "readable by others"),
        (["--auth-key", str(files.auth), "--peer-listen", "nowhere"], "HOST:PORT"),
        (["--auth-key", str(files.auth), "--peer-listen", busy], "address"),
    ]
    for extra, needle in cases:
        res = CliRunner().invoke(app, [*base, *extra])
        assert res.exit_code == 2, (extra, res.output)
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, res.stderr
        assert needle in lines[0], lines[0]
