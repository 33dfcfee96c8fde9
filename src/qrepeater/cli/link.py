"""`qrepeater link`, `memory`, `calibrate`, `presets`, `reproduce`: the hardware-facing commands."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from qrepeater.cli._common import handle_errors, kv_table, print_json, rows_table, stderr, stdout
from qrepeater.errors import PresetError

if TYPE_CHECKING:
    from qrepeater.link.heralding import ElementaryLink

# heavy modules (scipy, matplotlib, the report machinery) are imported inside the commands, so
# `qrepeater --help` and `link` start fast
DEFAULT_PRESET = "ustc2025"

PresetOpt = Annotated[str, typer.Option("--preset", help="Preset name or path to a .toml file.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.")]
KmOpt = Annotated[float | None, typer.Option("--fiber-km", help="Node-to-node fibre length (km).")]
AlphaOpt = Annotated[
    float | None, typer.Option("--alpha", help="Excitation probability in (0, 1).")
]


def _link(preset: str, alpha: float | None, fiber_km: float | None) -> ElementaryLink:
    from qrepeater.link.heralding import ElementaryLink
    from qrepeater.presets import load_preset

    return ElementaryLink.from_preset(load_preset(preset), alpha=alpha, fiber_km=fiber_km)


@handle_errors
def link(
    preset: PresetOpt = DEFAULT_PRESET,
    fiber_km: KmOpt = None,
    alpha: AlphaOpt = None,
    json: JsonOpt = False,
) -> None:
    """Rate, fidelity, correlators and error budget of the elementary link."""
    summary = _link(preset, alpha, fiber_km).summary()
    if json:
        print_json(summary)
    else:
        stdout.print(kv_table(f"Elementary link ({preset})", summary))


@handle_errors
def memory(
    preset: PresetOpt = DEFAULT_PRESET,
    fiber_km: KmOpt = None,
    alpha: AlphaOpt = None,
    window_s: Annotated[
        float | None, typer.Option("--window-s", help="Averaging window (s); default: mean wait.")
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Storage in the memories: F(t), wait-averaged fidelity, deterministic delivery, swap."""
    from qrepeater.link.storage import StoredLink

    summary = StoredLink(_link(preset, alpha, fiber_km)).summary(window_s=window_s)
    if json:
        print_json(summary)
    else:
        stdout.print(kv_table(f"Memory ({preset})", summary))


@handle_errors
def calibrate(
    preset: PresetOpt = DEFAULT_PRESET,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the calibrated preset to this .toml file.")
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Re-derive the fitted parameters of a preset from its targets."""
    from qrepeater.calibrate import calibrate as run_calibration
    from qrepeater.presets import load_preset, write_preset

    p = load_preset(preset)
    result = run_calibration(p)
    rows = [
        {
            "parameter": k,
            "preset": p.quantities[k].value,
            "calibrated": v,
            "fitted_to": p.quantities[k].fitted_to,
        }
        for k, v in result.values.items()
    ]
    if out is not None:
        if out.suffix != ".toml":
            raise PresetError(f"--out must name a .toml file, got {out}")
        write_preset(result.preset, out)
    if json:
        print_json(
            {
                "preset": p.label,
                "sweeps": result.sweeps,
                "parameters": rows,
                "written": str(out) if out else None,
            }
        )
    else:
        stdout.print(
            rows_table(
                f"Calibration of {p.label} ({result.sweeps} sweeps)",
                ["parameter", "preset", "calibrated", "fitted to"],
                [[r["parameter"], r["preset"], r["calibrated"], r["fitted_to"]] for r in rows],
            )
        )
        if out is not None:
            stderr.print(f"wrote {out}", markup=False, highlight=False)


@handle_errors
def presets(json: JsonOpt = False) -> None:
    """List the shipped presets."""
    from qrepeater.presets import available_presets, load_preset

    infos = []
    for name in available_presets():
        p = load_preset(name)
        infos.append({"name": p.name, "version": p.version, "description": p.description})
    if json:
        print_json({"presets": infos})
    else:
        stdout.print(
            rows_table(
                "Presets",
                ["name", "version", "description"],
                [[i["name"], i["version"], i["description"]] for i in infos],
            )
        )


@handle_errors
def reproduce_cmd(
    preset: PresetOpt = DEFAULT_PRESET,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the figures (PNG and PDF).")
    ] = Path("reproduction"),
    seed: Annotated[int, typer.Option("--seed", help="Seed of every Monte-Carlo step.")] = 2025,
    json: JsonOpt = False,
) -> None:
    """Reproduce the paper's numbers and figures on a preset."""
    from rich.progress import BarColumn, Progress, TextColumn

    from qrepeater.presets import load_preset
    from qrepeater.report.reproduce import ProgressEvent, reproduce

    p = load_preset(preset)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), console=stderr, transient=True, disable=json
    ) as bar:
        task = bar.add_task("reproducing", total=None)

        def on_progress(ev: ProgressEvent) -> None:
            bar.update(task, total=ev.total, completed=ev.done, description=ev.stage)

        result = reproduce(p, out_dir=out, seed=seed, progress=on_progress)
    if json:
        print_json(result.to_dict())
        return
    table = rows_table(
        f"Paper vs model ({p.label})",
        ["quantity", "paper", "model", "unit", "rel. diff", "kind"],
        [
            [
                r.name,
                r.paper
                if r.paper_uncertainty is None
                else f"{r.paper:.4g} ± {r.paper_uncertainty:.2g}",
                r.model,
                r.unit,
                None if r.rel_diff is None else f"{100 * r.rel_diff:+.1f}%",
                r.kind,
            ]
            for r in result.rows
        ],
    )
    stdout.print(table)
    stdout.print(
        f"figures: {', '.join(sorted({f.stem for f in result.figures}))} in {out}/",
        markup=False,
    )
