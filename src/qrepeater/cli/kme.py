"""`qrepeater kme ...`: run an ETSI GS QKD 014 Key Management Entity and fetch keys from one.

aiohttp (the ``qrepeater[service]`` extra) is imported inside the commands only.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated, Any

import typer

from qrepeater.cli._common import handle_errors, print_json, rows_table, stderr, stdout
from qrepeater.errors import ParameterError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.")]
CertOpt = Annotated[Path, typer.Option("--cert", help="PEM certificate (subject CN = own id).")]
KeyOpt = Annotated[Path, typer.Option("--key", help="PEM private key of --cert.")]
CaOpt = Annotated[Path, typer.Option("--ca", help="PEM CA certificate that signs the peers.")]
UrlOpt = Annotated[str, typer.Option("--url", help="KME base URL, https://host:port.")]


def _hostport(value: str, what: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ParameterError(f"{what} must be HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def _need_service() -> None:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise ParameterError("the KME needs aiohttp: pip install 'qrepeater[service]'") from None


def _check_files(*paths: Path) -> None:
    for p in paths:
        if not p.is_file():
            raise ParameterError(f"no such file: {p}")


@app.command("serve")
@handle_errors
def serve(
    store: Annotated[Path, typer.Option("--store", help="The node's key store (SQLite).")],
    auth_key: Annotated[
        Path, typer.Option("--auth-key", help="Pre-shared key of the KME-to-KME link.")
    ],
    cert: CertOpt,
    key: KeyOpt,
    ca: CaOpt,
    listen: Annotated[
        str, typer.Option("--listen", help="HTTPS address for SAEs, HOST:PORT.")
    ] = "127.0.0.1:8443",
    peer_listen: Annotated[
        str | None,
        typer.Option("--peer-listen", help="Lead the KME pair: accept the peer KME here."),
    ] = None,
    peer_connect: Annotated[
        str | None,
        typer.Option("--peer-connect", help="Follow: connect to the leading KME here."),
    ] = None,
    kme_id: Annotated[
        str | None, typer.Option("--kme-id", help="This KME's id (default: store file stem).")
    ] = None,
    ledger: Annotated[
        Path | None, typer.Option("--ledger", help="KME ledger file (default: STORE.kme).")
    ] = None,
    unit_bits: Annotated[int, typer.Option("--unit-bits", help="Bits per stored key.")] = 256,
    key_size: Annotated[int, typer.Option("--key-size", help="Default key size in bits.")] = 256,
    max_key_per_request: Annotated[
        int, typer.Option("--max-key-per-request", help="Most keys per request.")
    ] = 128,
    max_key_count: Annotated[
        int, typer.Option("--max-key-count", help="Advertised store capacity.")
    ] = 1_000_000,
    peer_timeout: Annotated[
        float, typer.Option("--peer-timeout", help="Seconds to wait for the peer KME.")
    ] = 10.0,
    verbose: Annotated[bool, typer.Option("--verbose", help="Log to stderr.")] = False,
    json: JsonOpt = False,
) -> None:
    """Serve the ETSI GS QKD 014 API over mutual TLS until SIGINT/SIGTERM.

    With --json, one JSON line with the bound ports is printed once the KME listens.
    """
    _need_service()
    import asyncio
    import logging
    import signal

    from qrepeater.service.kme import KMEConfig, run_kme

    if (peer_listen is None) == (peer_connect is None):
        raise ParameterError("give exactly one of --peer-listen and --peer-connect")
    _check_files(auth_key, cert, key, ca)
    addr = _hostport(listen, "--listen")
    p_listen = _hostport(peer_listen, "--peer-listen") if peer_listen else None
    p_connect = _hostport(peer_connect, "--peer-connect") if peer_connect else None
    config = KMEConfig(
        kme_id=kme_id or store.stem,
        key_size=key_size,
        max_key_per_request=max_key_per_request,
        max_key_count=max_key_count,
        peer_timeout_s=peer_timeout,
    )
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )

    def ready(info: dict[str, Any]) -> None:
        if json:
            print_json({"kme_id": config.kme_id, **info})
        else:
            stderr.print(
                f"KME {config.kme_id} ({info['role']}) on https://{addr[0]}:{info['port']}",
                highlight=False,
            )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_kme(
            store_path=store,
            auth_key=auth_key,
            cert=cert,
            key=key,
            ca=ca,
            listen=addr,
            config=config,
            peer_listen=p_listen,
            peer_connect=p_connect,
            ledger_path=ledger,
            unit_bits=unit_bits,
            ready=ready,
            stop=stop,
        )

    asyncio.run(main())


@app.command("get-keys")
@handle_errors
def get_keys(
    url: UrlOpt,
    cert: CertOpt,
    key: KeyOpt,
    ca: CaOpt,
    slave: Annotated[
        str | None, typer.Option("--slave", help="As master: new keys shared with this SAE.")
    ] = None,
    master: Annotated[
        str | None, typer.Option("--master", help="As slave: the keys this master obtained.")
    ] = None,
    key_id: Annotated[
        list[str] | None, typer.Option("--key-id", help="Key id to fetch (with --master).")
    ] = None,
    number: Annotated[int, typer.Option("--number", help="Number of keys (with --slave).")] = 1,
    size: Annotated[
        int | None, typer.Option("--size", help="Key size in bits (default: the KME's).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the key container here (0600).")
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Fetch keys: enc_keys (--slave SAE) or dec_keys (--master SAE --key-id ID ...)."""
    import json as jsonlib

    from qrepeater._io import atomic_write_bytes
    from qrepeater.service.client import Client

    if (slave is None) == (master is None):
        raise ParameterError("give exactly one of --slave (enc_keys) and --master (dec_keys)")
    if master is not None and not key_id:
        raise ParameterError("--master needs at least one --key-id")
    if slave is not None and key_id:
        raise ParameterError("--key-id goes with --master")
    _check_files(cert, key, ca)
    with Client(url, cert=cert, key=key, ca=ca) as kme:
        if slave is not None:
            keys = kme.enc_keys(slave, number=number, size=size)
        else:
            assert master is not None
            assert key_id is not None
            keys = kme.dec_keys(master, key_id)
    container = {"keys": [k.to_json() for k in keys]}
    if out is not None:
        atomic_write_bytes(out, jsonlib.dumps(container).encode() + b"\n", mode=0o600)
    if json:
        print_json(container)
        return
    rows = [(k.key_id, k.bits, base64.b64encode(k.key).decode("ascii")) for k in keys]
    stdout.print(rows_table("keys", ["key_ID", "bits", "key (base64)"], rows))


@app.command("status")
@handle_errors
def status(
    url: UrlOpt,
    cert: CertOpt,
    key: KeyOpt,
    ca: CaOpt,
    slave: Annotated[str, typer.Option("--slave", help="Slave SAE_ID.")],
    json: JsonOpt = False,
) -> None:
    """Get status (ETSI GS QKD 014 clause 5.1) of the keys for --slave."""
    from qrepeater.cli._common import kv_table
    from qrepeater.service.client import Client

    _check_files(cert, key, ca)
    with Client(url, cert=cert, key=key, ca=ca) as kme:
        st = kme.status(slave).to_json()
    if json:
        print_json(st)
    else:
        stdout.print(kv_table("KME status", st))


@app.command("auth-key")
@handle_errors
def auth_key_cmd(
    out: Annotated[Path, typer.Option("--out", help="This site's copy (mode 0600).")],
    peer_out: Annotated[Path, typer.Option("--peer-out", help="The peer KME's copy.")],
    n_bytes: Annotated[
        int, typer.Option("--bytes", help="Pool size; each KME request costs 32 bytes.")
    ] = 4 << 20,
    json: JsonOpt = False,
) -> None:
    """Write a fresh pre-shared key for the KME-to-KME link: two identical 0600 files.

    Use a key of its own for the KME link, never the nodes' auth key (a pad must never
    authenticate two links). Existing files are never overwritten.
    """
    from qrepeater.qkdpp.framing import write_auth_key_pair

    if n_bytes < 1024:
        raise ParameterError(f"--bytes must be at least 1024, got {n_bytes}")
    bits = write_auth_key_pair(8 * n_bytes, out, peer_out)
    info = {"out": str(out), "peer_out": str(peer_out), "bytes": bits // 8, "requests": bits // 256}
    if json:
        print_json(info)
    else:
        stdout.print(
            f"wrote {bits // 8:,} bytes to {out} and {peer_out} "
            f"(about {bits // 256:,} KME requests)"
        )
