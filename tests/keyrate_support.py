"""The paper's DI-QKD statistics, shared by the key-rate tests (Liu et al. 2025, 10 km run)."""

from __future__ import annotations

from typing import Any

from qrepeater.diqkd.rounds import SettingDistribution

#: N, n, t, S, Q, eps and f of the experiment's finite-key run
PAPER: dict[str, Any] = {
    "rounds": 405_145,
    "key_rounds": 105_976,
    "test_rounds": 270_097,
    "chsh": 2.5758,
    "qber": 0.036,
    "eps": 1e-5,
    "ec_efficiency": 1.122,
}
#: the paper's secret key length
PAPER_KEY_BITS = 1_917
#: the preset's P(X = 0), P(Y = 2): key fraction 105,976 / 405,145 and about 2/3 test rounds
EXPERIMENT = SettingDistribution.from_fractions(
    p_x0=0.7786295345631634, p_y2=0.33594344127573195
).probabilities()
