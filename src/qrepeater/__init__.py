"""qrepeater: calibrated trapped-ion network links, memories and DI-QKD.

The public API is re-exported here; everything else is internal and may change.
"""

from importlib import metadata as _metadata

from qrepeater import kme  # ETSI GS QKD 014 client: qr.kme.Client
from qrepeater.calibrate import CalibrationResult, calibrate
from qrepeater.diqkd import (
    DistillConfig,
    DistillResult,
    asymptotic_rate,
    distill,
    estimate_bell,
    finite_key,
    optimise_protocol,
    read_run,
    reconcile,
    simulate_from_preset,
    write_run,
)
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

try:
    __version__ = _metadata.version("qrepeater")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a bare source tree
    __version__ = "0+unknown"

__all__ = [
    "AuthenticationError",
    "CalibrationError",
    "CalibrationResult",
    "DistillConfig",
    "DistillResult",
    "ElementaryLink",
    "HeraldSamples",
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
    "StoredLink",
    "__version__",
    "asymptotic_rate",
    "available_presets",
    "calibrate",
    "delivery_fidelity",
    "delivery_threshold",
    "distill",
    "estimate_bell",
    "finite_key",
    "kme",
    "load_preset",
    "optimise_protocol",
    "read_run",
    "reconcile",
    "required_coherence_time",
    "sample_attempts",
    "sample_heralds",
    "simulate_from_preset",
    "swap_requirements",
    "write_preset",
    "write_run",
]
