"""qrepeater: calibrated trapped-ion network links, memories, repeaters and DI-QKD.

The public API is re-exported here; everything else is internal and may change.
"""

from qrepeater.calibrate import CalibrationResult, calibrate
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

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "CalibrationError",
    "CalibrationResult",
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
    "available_presets",
    "calibrate",
    "delivery_fidelity",
    "delivery_threshold",
    "load_preset",
    "required_coherence_time",
    "sample_attempts",
    "sample_heralds",
    "swap_requirements",
    "write_preset",
]
