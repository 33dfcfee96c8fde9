"""Command-line interface: renders what the core computes (typer + rich)."""

from __future__ import annotations

import typer

from qrepeater.cli import chain as _chain
from qrepeater.cli import diqkd as _diqkd
from qrepeater.cli import keys as _keys
from qrepeater.cli import kme as _kme
from qrepeater.cli import link as _link
from qrepeater.cli import node as _node
from qrepeater.cli import sweep as _sweep

app = typer.Typer(
    name="qrepeater",
    help="Calibrated trapped-ion network links, memories and DI-QKD.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("link")(_link.link)
app.command("memory")(_link.memory)
app.command("calibrate")(_link.calibrate)
app.command("presets")(_link.presets)
app.command("reproduce")(_link.reproduce_cmd)
app.command("keyrate")(_keys.keyrate)
app.command("reconcile")(_keys.reconcile)
app.command("sweep")(_sweep.sweep)
app.command("results")(_sweep.results)
app.command("plot")(_sweep.plot)
app.add_typer(_chain.app, name="chain", help="Repeater chains: waiting time, state, key rate.")
app.add_typer(_diqkd.app, name="diqkd", help="DI-QKD rounds, estimation and key distillation.")
app.add_typer(_kme.app, name="kme", help="ETSI GS QKD 014 key management entity (KME).")
app.command("node")(_node.node)
app.add_typer(_node.auth_app, name="auth-key", help="Pre-shared authentication pools.")


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
