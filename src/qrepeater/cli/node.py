"""``qrepeater node alice|bob`` (networked DI-QKD nodes) and ``qrepeater auth-key new``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from qrepeater.cli._common import fail, handle_errors, print_json

auth_app = typer.Typer(
    help="Pre-shared authentication key pools for the node link.",
    no_args_is_help=True,
)


@auth_app.command("new")
@handle_errors
def auth_key_new(
    bits: Annotated[int, typer.Option("--bits", help="Pool size in bits (>= 8192).")],
    out: Annotated[Path, typer.Option("--out", help="This site's copy (e.g. alice.auth).")],
    peer_out: Annotated[
        Path, typer.Option("--peer-out", help="The copy to carry to the peer (e.g. bob.auth).")
    ],
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Write a fresh authentication pool to two identical 0600 files (never overwrites)."""
    from qrepeater.qkdpp.framing import LINK_PARAMS, AuthPool, write_auth_key_pair

    written = write_auth_key_pair(bits, out, peer_out)
    pool = AuthPool(out.read_bytes(), params=LINK_PARAMS)
    info = {
        "bits": written,
        "out": str(out),
        "peer_out": str(peer_out),
        "tag_bits": LINK_PARAMS.tag_bits,
        "frames_alice_to_bob": pool.slots("alice->bob"),
        "frames_bob_to_alice": pool.slots("bob->alice"),
    }
    if json_out:
        print_json(info)
    else:
        sys.stdout.write(
            f"wrote {written} bits to {out} and {peer_out} "
            f"({info['frames_alice_to_bob']} + {info['frames_bob_to_alice']} frames)\n"
        )


def node(
    party: Annotated[str, typer.Argument(help="alice (listens) or bob (connects).")],
    records: Annotated[Path, typer.Option("--records", help="This party's round record.")],
    auth_key: Annotated[Path, typer.Option("--auth-key", help="This site's auth pool file.")],
    store: Annotated[Path, typer.Option("--store", help="SQLite key store (created 0600).")],
    listen: Annotated[
        str | None, typer.Option("--listen", help="Alice: host:port to listen on.")
    ] = None,
    connect: Annotated[
        str | None, typer.Option("--connect", help="Bob: host:port of Alice's node.")
    ] = None,
    block_rounds: Annotated[
        int | None, typer.Option("--block-rounds", help="Rounds per block (default: all).")
    ] = None,
    method: Annotated[
        str, typer.Option("--method", help="phase-error, geat, renyi-geat or eat.")
    ] = "phase-error",
    eps: Annotated[float, typer.Option("--eps", help="Soundness error of each block.")] = 1e-5,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait per frame.")] = 120.0,
    retry_for: Annotated[
        float, typer.Option("--retry-for", help="Seconds to keep reconnecting / waiting.")
    ] = 600.0,
    port_file: Annotated[
        Path | None, typer.Option("--port-file", help="Alice: write the bound port here.")
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Reproducible public choices (tests only).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON summary.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Log every frame's sequence number.")
    ] = False,
    warm_up: Annotated[
        bool,
        typer.Option("--warm-up/--no-warm-up", help="Load the decoder before the first block."),
    ] = True,
) -> None:
    """Run one party's node until every block of its record is committed or aborted.

    Alice: ``qrepeater node alice --records alice.parquet --listen 127.0.0.1:7001 --auth-key
    alice.auth --store alice-keys.db``; Bob: the same with ``bob`` and ``--connect``. Progress
    goes to stderr (no key material); ``--json`` prints the per-block reports at the end.
    Exit status 2 for bad input, 3 when the link or the authentication pool fails for good.
    """
    code = _run_node(
        party=party,
        records=records,
        auth_key=auth_key,
        store=store,
        listen=listen,
        connect=connect,
        block_rounds=block_rounds,
        method=method,
        eps=eps,
        timeout=timeout,
        retry_for=retry_for,
        port_file=port_file,
        seed=seed,
        json_out=json_out,
        verbose=verbose,
        warm_up=warm_up,
    )
    if code:
        raise typer.Exit(code)


@handle_errors
def _run_node(**kw: Any) -> int:
    from qrepeater.diqkd.keyrate import METHODS
    from qrepeater.diqkd.parties import DistillConfig
    from qrepeater.errors import AuthenticationError, ParameterError, TransportError
    from qrepeater.qkdpp.transport import parse_address
    from qrepeater.service.node import NodeConfig, run_node

    party = kw["party"]
    if party not in ("alice", "bob"):
        raise ParameterError(f"party must be 'alice' or 'bob', got {party!r}")
    if kw["method"] not in METHODS:
        raise ParameterError(f"method must be one of {', '.join(METHODS)}, got {kw['method']!r}")
    logging.basicConfig(
        level=logging.DEBUG if kw["verbose"] else logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s {party} %(levelname)s %(message)s",
    )
    cfg = NodeConfig(
        party=party,
        records=kw["records"],
        store=kw["store"],
        auth_key=kw["auth_key"],
        listen=None if kw["listen"] is None else parse_address(kw["listen"]),
        connect=None if kw["connect"] is None else parse_address(kw["connect"]),
        block_rounds=kw["block_rounds"],
        distill=DistillConfig(method=kw["method"], eps=kw["eps"]),
        seed=kw["seed"],
        timeout_s=kw["timeout"],
        retry_for_s=kw["retry_for"],
        warm_up=kw["warm_up"],
    )
    port_file: Path | None = kw["port_file"]

    def on_listen(port: int) -> None:
        if port_file is not None:
            tmp = port_file.with_name(port_file.name + ".tmp")
            tmp.write_text(f"{port}\n")
            tmp.replace(port_file)

    try:
        summary = run_node(cfg, on_listen=on_listen)
    except (TransportError, AuthenticationError) as exc:
        raise fail(f"{party}: {exc}", 3) from None
    if kw["json_out"]:
        print_json(summary.to_dict())
    return 0
