"""Calibrated component models: ion source, frequency conversion, fibre, detectors, memory."""

from qrepeater.hardware.conversion import FrequencyConverter
from qrepeater.hardware.detector import Detector
from qrepeater.hardware.fiber import Fiber
from qrepeater.hardware.memory import Memory
from qrepeater.hardware.phase import PhaseStabilisation
from qrepeater.hardware.source import IonQubit, IonSource, debye_waller
from qrepeater.hardware.system import LinkHardware, Timing

__all__ = [
    "Detector",
    "Fiber",
    "FrequencyConverter",
    "IonQubit",
    "IonSource",
    "LinkHardware",
    "Memory",
    "PhaseStabilisation",
    "Timing",
    "debye_waller",
]
