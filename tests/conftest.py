"""Shared fixtures. Matplotlib runs on the Agg backend in every test."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest

from qrepeater.link.heralding import ElementaryLink
from qrepeater.presets import Preset, load_preset


@pytest.fixture(scope="session")
def preset() -> Preset:
    """The default calibrated preset."""
    return load_preset("ustc2025")


@pytest.fixture(scope="session")
def rate_link(preset: Preset) -> ElementaryLink:
    """The link at the paper's rate operating point (alpha = 17%, 10 km)."""
    return ElementaryLink(preset.hardware, alpha=0.17, fiber_km=10.0)


@pytest.fixture(scope="session")
def tomo_link(preset: Preset) -> ElementaryLink:
    """The link at the tomography operating point (alpha = 2.5%, 10 km)."""
    return ElementaryLink(preset.hardware, alpha=0.025, fiber_km=10.0)
