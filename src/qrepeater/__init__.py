"""qrepeater: calibrated trapped-ion network links, memories and DI-QKD.

The public API is re-exported here; everything else is internal and may change.

Names are imported lazily (PEP 562 ``__getattr__``): ``import qrepeater`` stays cheap, so the
command line starts fast, and ``qrepeater.distill`` imports :mod:`qrepeater.diqkd.pipeline` on
first use. To export a name, add one ``"name": "module"`` entry to ``_LAZY`` and the name to
``__all__`` (and, for type checkers, to the ``TYPE_CHECKING`` imports).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from qrepeater.errors import (
    AuthenticationError,
    CalibrationError,
    ParameterError,
    PresetError,
    ProtocolAbort,
    QRepeaterError,
    ReconciliationError,
    RecordError,
)

#: public name -> module that defines it (imported on first access)
_LAZY: dict[str, str] = {
    "CalibrationResult": "qrepeater.calibrate",
    "calibrate": "qrepeater.calibrate",
    "Alice": "qrepeater.diqkd.parties",
    "Bob": "qrepeater.diqkd.parties",
    "KeyStore": "qrepeater.qkdpp.keystore",
    "DistillConfig": "qrepeater.diqkd.pipeline",
    "DistillResult": "qrepeater.diqkd.pipeline",
    "distill": "qrepeater.diqkd.pipeline",
    "asymptotic_rate": "qrepeater.diqkd.keyrate",
    "finite_key": "qrepeater.diqkd.keyrate",
    "estimate_bell": "qrepeater.diqkd.estimate",
    "optimise_protocol": "qrepeater.diqkd.optimize",
    "read_run": "qrepeater.diqkd.records",
    "write_run": "qrepeater.diqkd.records",
    "simulate_from_preset": "qrepeater.diqkd.rounds",
    "reconcile": "qrepeater.qkdpp.reconciliation",
    "LinkHardware": "qrepeater.hardware",
    "Memory": "qrepeater.hardware",
    "ElementaryLink": "qrepeater.link.heralding",
    "Mechanisms": "qrepeater.link.heralding",
    "HeraldSamples": "qrepeater.link.sampler",
    "sample_attempts": "qrepeater.link.sampler",
    "sample_heralds": "qrepeater.link.sampler",
    "StoredLink": "qrepeater.link.storage",
    "delivery_fidelity": "qrepeater.link.storage",
    "delivery_threshold": "qrepeater.link.storage",
    "required_coherence_time": "qrepeater.link.storage",
    "swap_requirements": "qrepeater.link.storage",
    "Preset": "qrepeater.presets",
    "available_presets": "qrepeater.presets",
    "load_preset": "qrepeater.presets",
    "write_preset": "qrepeater.presets",
    "ResultTable": "qrepeater.sweep",
    "SampleBudget": "qrepeater.sweep",
    "SweepEvent": "qrepeater.sweep",
    "collect": "qrepeater.sweep",
    "load_spec": "qrepeater.sweep",
    "make_executor": "qrepeater.sweep",
    "make_task": "qrepeater.sweep",
    "read_results": "qrepeater.sweep",
    "sweep": "qrepeater.sweep",
    "kme": "qrepeater.kme",  # the submodule itself (qrepeater.kme.kme is the module)
    "Chain": "qrepeater.repeater.chain",
    "ChainResult": "qrepeater.repeater.chain",
    "Segment": "qrepeater.repeater.segments",
    "SwapNoise": "qrepeater.repeater.segments",
    "Requirement": "qrepeater.repeater.requirements",
    "chain_requirements": "qrepeater.repeater.requirements",
}

if TYPE_CHECKING:  # what the lazy table provides, for type checkers and IDEs
    from qrepeater import kme
    from qrepeater.calibrate import CalibrationResult, calibrate
    from qrepeater.diqkd.estimate import estimate_bell
    from qrepeater.diqkd.keyrate import asymptotic_rate, finite_key
    from qrepeater.diqkd.optimize import optimise_protocol
    from qrepeater.diqkd.parties import Alice, Bob
    from qrepeater.diqkd.pipeline import DistillConfig, DistillResult, distill
    from qrepeater.diqkd.records import read_run, write_run
    from qrepeater.diqkd.rounds import simulate_from_preset
    from qrepeater.hardware import LinkHardware, Memory
    from qrepeater.link.heralding import ElementaryLink, Mechanisms
    from qrepeater.link.sampler import HeraldSamples, sample_attempts, sample_heralds
    from qrepeater.link.storage import (
        StoredLink,
        delivery_fidelity,
        delivery_threshold,
        required_coherence_time,
        swap_requirements,
    )
    from qrepeater.presets import Preset, available_presets, load_preset, write_preset
    from qrepeater.qkdpp.keystore import KeyStore
    from qrepeater.qkdpp.reconciliation import reconcile
    from qrepeater.repeater.chain import Chain, ChainResult
    from qrepeater.repeater.requirements import Requirement, chain_requirements
    from qrepeater.repeater.segments import Segment, SwapNoise
    from qrepeater.sweep import (
        ResultTable,
        SampleBudget,
        SweepEvent,
        collect,
        load_spec,
        make_executor,
        make_task,
        read_results,
        sweep,
    )


class _Package(types.ModuleType):
    """The package module. The import system binds every submodule on its parent once it is
    loaded; where a public function shares its submodule's name (``qrepeater.calibrate``), the
    function wins, as it did when this package imported it eagerly."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == value.__name__ == (
            f"{__name__}.{name}"
        ):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib import metadata

        try:
            version = metadata.version("qrepeater")
        except metadata.PackageNotFoundError:  # pragma: no cover - a bare source tree
            version = "0+unknown"
        globals()["__version__"] = version
        return version
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'qrepeater' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, "__version__"})


# every public name: the errors above and the keys of _LAZY (a test checks they agree)
__all__ = [
    "Alice",
    "AuthenticationError",
    "Bob",
    "CalibrationError",
    "CalibrationResult",
    "Chain",
    "ChainResult",
    "DistillConfig",
    "DistillResult",
    "ElementaryLink",
    "HeraldSamples",
    "KeyStore",
    "LinkHardware",
    "Mechanisms",
    "Memory",
    "ParameterError",
    "Preset",
    "PresetError",
    "ProtocolAbort",
    "QRepeaterError",
    "ReconciliationError",
    "RecordError",
    "Requirement",
    "ResultTable",
    "SampleBudget",
    "Segment",
    "StoredLink",
    "SwapNoise",
    "SweepEvent",
    "__version__",
    "asymptotic_rate",
    "available_presets",
    "calibrate",
    "chain_requirements",
    "collect",
    "delivery_fidelity",
    "delivery_threshold",
    "distill",
    "estimate_bell",
    "finite_key",
    "kme",
    "load_preset",
    "load_spec",
    "make_executor",
    "make_task",
    "optimise_protocol",
    "read_results",
    "read_run",
    "reconcile",
    "required_coherence_time",
    "sample_attempts",
    "sample_heralds",
    "simulate_from_preset",
    "swap_requirements",
    "sweep",
    "write_preset",
    "write_run",
]
