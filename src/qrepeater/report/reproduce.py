"""Paper reproduction: the table of paper-vs-model rows and the figures.

:func:`reproduce` computes everything first and writes the figures last, into a temporary
folder renamed into place, so a failure leaves no partial output. Progress is reported through
an optional callback (the CLI renders it); the core prints nothing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from qrepeater.presets import Preset
from qrepeater.report.chain_outlook import chain_rows, fig_chain_distance
from qrepeater.report.diqkd_report import diqkd_rows, fig_accumulated
from qrepeater.report.figures import FIGURES, save
from qrepeater.report.key_report import key_rows
from qrepeater.report.rows import ReproductionContext, Row, RowProvider, link_rows, memory_rows

FigureMaker = Callable[[ReproductionContext], Figure]

#: every row provider of the reproduction, in table order
PROVIDERS: list[RowProvider] = [link_rows, memory_rows, diqkd_rows, key_rows, chain_rows]
#: every figure of the reproduction, by file stem
FIGURE_MAKERS: dict[str, FigureMaker] = {
    **FIGURES,
    "fig4c_accumulated": fig_accumulated,
    "chain_distance": fig_chain_distance,
}


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a long computation: ``done`` of ``total`` steps, named ``stage``."""

    stage: str
    done: int
    total: int


@dataclass(frozen=True)
class Reproduction:
    """Rows of the paper-vs-model table and the figure files written."""

    preset: str
    rows: list[Row]
    figures: list[Path]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict: ``{"preset", "rows": [...], "figures": [...]}``."""
        return {
            "preset": self.preset,
            "rows": [r.to_dict() for r in self.rows],
            "figures": [str(p) for p in self.figures],
        }


def reproduce(
    preset: Preset,
    *,
    out_dir: str | os.PathLike[str] | None,
    seed: int = 2025,
    providers: list[RowProvider] | None = None,
    figures: dict[str, FigureMaker] | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
) -> Reproduction:
    """Compute the reproduction rows and (if ``out_dir``) write the figures as PNG and PDF."""
    ctx = ReproductionContext(preset=preset, seed=seed)
    providers = providers if providers is not None else PROVIDERS
    figure_makers = figures if figures is not None else FIGURE_MAKERS
    if out_dir is None:
        figure_makers = {}
    total = len(providers) + len(figure_makers)
    done = 0
    rows: list[Row] = []
    for provider in providers:
        rows.extend(provider(ctx))
        done += 1
        if progress:
            progress(ProgressEvent(stage=provider.__name__, done=done, total=total))
    made: dict[str, Figure] = {}
    for name, maker in figure_makers.items():
        made[name] = maker(ctx)
        done += 1
        if progress:
            progress(ProgressEvent(stage=name, done=done, total=total))
    written: list[Path] = []
    if out_dir is not None:
        out = Path(out_dir)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
        try:
            for name, fig in made.items():
                save(fig, tmp, name)
            out.mkdir(exist_ok=True)
            for f in sorted(tmp.iterdir()):
                os.replace(f, out / f.name)
                written.append(out / f.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return Reproduction(preset=preset.label, rows=rows, figures=written)
