"""End to end, four processes on 127.0.0.1: Alice's node and KME, Bob's node and KME.

A simulated 10 km run is distilled by the two ``qrepeater node`` processes into their key
stores while the two ``qrepeater kme serve`` processes serve those stores (certificates by
trustme, KME link with its own auth key). Then master SAEs fetch keys with enc_keys from one KME
and their slaves the same ids with dec_keys from the other: equal bytes, equal to the bytes the
nodes committed, each id once, concurrent masters disjoint.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kme_support import KMEProcess, PairFiles, make_certs, wait_until
from qrepeater.diqkd.records import write_run
from qrepeater.diqkd.rounds import simulate_from_preset
from qrepeater.presets import Preset
from qrepeater.qkdpp.framing import write_auth_key_pair
from qrepeater.qkdpp.keystore import KeyStore
from qrepeater.service.client import Client

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# a better-than-paper 10 km link, so that 2 blocks of 100,000 rounds give a few keys each
GOOD = {"ion.residual_coherence": 1.0, "ion.spam_error": 0.0, "phase.contrast": 1.0}


@pytest.fixture
def nodes_and_kmes(tmp_path: Path, preset: Preset) -> Iterator[dict[str, Any]]:
    run = simulate_from_preset(
        preset.replace(GOOD), n_rounds=200_000, seed=3, fiber_km=10.0, alpha=0.01
    )
    write_run(tmp_path / "rec", run)
    write_auth_key_pair(1 << 23, tmp_path / "alice.auth", tmp_path / "bob.auth")
    write_auth_key_pair(1 << 22, tmp_path / "alice-kme.auth", tmp_path / "bob-kme.auth")
    certs = make_certs(tmp_path / "certs")
    store_a, store_b = tmp_path / "alice-keys.db", tmp_path / "bob-keys.db"
    node_procs: list[subprocess.Popen[bytes]] = []

    def node(party: str, where: list[str]) -> subprocess.Popen[bytes]:
        with open(tmp_path / f"{party}-node.log", "ab") as err:
            p = subprocess.Popen(
                [sys.executable, "-m", "qrepeater", "node", party,
                 "--records", str(tmp_path / "rec" / f"{party}.parquet"),
                 "--auth-key", str(tmp_path / f"{party}.auth"),
                 "--store", str(tmp_path / f"{party}-keys.db"),
                 "--block-rounds", "100000", "--seed", "21", "--json", *where],
                stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        node_procs.append(p)
        return p

    kmes: list[KMEProcess] = []
    try:
        port_file = tmp_path / "alice.port"
        na = node("alice", ["--listen", "127.0.0.1:0", "--port-file", str(port_file)])
        assert wait_until(lambda: port_file.exists() and port_file.read_text().strip(), 60)
        nb = node("bob", ["--connect", f"127.0.0.1:{port_file.read_text().strip()}"])
        assert wait_until(lambda: store_a.exists() and store_b.exists(), 60)
        # the KMEs start while the nodes distil
        files = PairFiles(certs, store_a, store_b, tmp_path / "alice-kme.auth", [])
        ka = KMEProcess("kme-a", files=files, store=store_a, peer_listen="127.0.0.1:0")
        ka.start()
        kmes.append(ka)
        files_b = PairFiles(certs, store_a, store_b, tmp_path / "bob-kme.auth", [])
        kb = KMEProcess("kme-b", files=files_b, store=store_b, peer_connect=ka.peer_listen or "")
        kb.start()
        kmes.append(kb)
        assert na.wait(600) == 0
        assert nb.wait(600) == 0
        yield {"a": ka, "b": kb, "certs": certs, "store_a": store_a, "store_b": store_b}
    finally:
        for k in kmes:
            k.kill()
        for p in node_procs:
            if p.poll() is None:
                p.kill()
            p.wait(30)


def test_four_processes_nodes_and_kmes(nodes_and_kmes: dict[str, Any]) -> None:
    env = nodes_and_kmes
    certs = env["certs"]
    with KeyStore(env["store_a"]) as sa, KeyStore(env["store_b"]) as sb:
        ids = sa.key_ids()
        assert ids == sb.key_ids()
        committed = {k: sa.get(k).key for k in ids}
        assert committed == {k: sb.get(k).key for k in ids}
    assert len(ids) >= 6, "the nodes distilled too few keys for this test"

    def c(which: str, sae: str) -> Client:
        return Client(env[which].url, **certs.client_kwargs(sae))

    assert wait_until(lambda: c("b", "sae-b1").status("sae-a1").target_KME_ID == "kme-a", 30)
    assert c("a", "sae-a1").status("sae-b1").stored_key_count == len(ids)

    # one master and its slave
    keys = c("a", "sae-a1").enc_keys("sae-b1", number=2)
    got = c("b", "sae-b1").dec_keys("sae-a1", [k.key_id for k in keys])
    assert [g.key for g in got] == [k.key for k in keys]
    assert all(k.key == committed[k.key_id] for k in keys)  # the bytes the nodes distilled

    # concurrent masters on both sides get disjoint keys
    out: dict[str, list[Any]] = {}
    plan = [("a", "sae-a1", "sae-b1"), ("a", "sae-a2", "sae-b2"), ("b", "sae-b2", "sae-a1")]

    def master(which: str, sae: str, slave: str) -> None:
        out[sae] = c(which, sae).enc_keys(slave, number=1)

    threads = [threading.Thread(target=master, args=p) for p in plan]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    fetched = [k.key_id for ks in out.values() for k in ks]
    assert len(fetched) == 3
    assert len(set(fetched) | {k.key_id for k in keys}) == 5  # each id once
    for which, sae, slave in plan:
        peer = "b" if which == "a" else "a"
        got = c(peer, slave).dec_keys(sae, [k.key_id for k in out[sae]])
        assert [g.key for g in got] == [k.key for k in out[sae]]
        assert all(g.key == committed[g.key_id] for g in got)
    remaining = len(ids) - 5
    assert c("a", "sae-a1").status("sae-b1").stored_key_count == remaining
    assert c("b", "sae-b1").status("sae-a1").stored_key_count == remaining
