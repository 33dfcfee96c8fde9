"""Asymptotic key rate of CHSH-based DI-QKD and the single-round CHSH entropy bound.

Pironio, Acin, Brunner, Gisin, Massar & Scarani, NJP 11, 045021 (2009): against collective attacks
H(A_x|E) >= 1 - h((1 + sqrt((S/2)^2 - 1))/2), tight for CHSH; the Devetak-Winter rate is this
minus h(Q). Entropy accumulation (EAT, GEAT) and the complementarity analysis reach it
asymptotically for general attacks.
"""

from __future__ import annotations

from qrepeater.diqkd.keyrate.common import _check_chsh_physical, _check_qber, _h, _pironio

__all__ = ["asymptotic_rate", "chsh_entropy_bound"]


def chsh_entropy_bound(chsh: float) -> float:
    """Single-round bound H(A_x|E) >= 1 - h((1 + sqrt((S/2)^2 - 1))/2) for CHSH value S.

    Pironio et al., NJP 11, 045021 (2009), main result (the Holevo bound chi(B:E) <=
    h((1 + sqrt((S/2)^2 - 1))/2)); written in winning probability omega = (4 + S)/8 it is
    Nadlinger et al., Nature 607, 682 (2022), Suppl. Eq. (62). It holds for either of Alice's
    settings (CHSH is symmetric under relabelling x and Bob's y = 1 output). Returns 0 for
    S <= 2; raises :class:`ParameterError` beyond the Tsirelson bound.
    """
    return _pironio(_check_chsh_physical(chsh))


def asymptotic_rate(*, chsh: float, qber: float) -> float:
    """Asymptotic key rate per key round, r = 1 - h(Q) - h((1 + sqrt((S/2)^2 - 1))/2).

    Pironio et al., NJP 11, 045021 (2009) (Devetak-Winter rate with their CHSH bound on Eve's
    Holevo information, collective attacks, which the EAT and the complementarity analysis of
    Zhang et al., PRL 131, 140801 (2023) extend to general attacks asymptotically). Clamped at 0:
    S <= 2 (no Bell violation) and parameters where the expression is negative return 0.0.
    Raises :class:`ParameterError` for |S| > 2 sqrt 2 or Q outside [0, 0.5).
    """
    s = _check_chsh_physical(chsh)
    q = _check_qber(qber)
    return max(0.0, _pironio(s) - _h(q))
