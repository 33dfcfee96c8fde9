"""Device-independent QKD: rounds and records, Bell-test estimation, key-rate bounds, the
optimiser, and the sans-IO Alice and Bob parties that compose the protocol-independent
primitives of :mod:`qrepeater.qkdpp` (with their in-process driver, :func:`distill`).

Names are re-exported lazily, so importing one submodule does not load the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qrepeater._lazy import lazy_exports

_LAZY: dict[str, str] = {
    "AccumulatedEstimate": "qrepeater.diqkd.estimate",
    "BellEstimate": "qrepeater.diqkd.estimate",
    "accumulate": "qrepeater.diqkd.estimate",
    "estimate_bell": "qrepeater.diqkd.estimate",
    "FiniteKeyResult": "qrepeater.diqkd.keyrate",
    "SettingProbabilities": "qrepeater.diqkd.keyrate",
    "asymptotic_rate": "qrepeater.diqkd.keyrate",
    "finite_key": "qrepeater.diqkd.keyrate",
    "ProtocolPoint": "qrepeater.diqkd.optimize",
    "evaluate_protocol": "qrepeater.diqkd.optimize",
    "optimise_protocol": "qrepeater.diqkd.optimize",
    "DistillConfig": "qrepeater.diqkd.pipeline",
    "DistillReport": "qrepeater.diqkd.pipeline",
    "DistillResult": "qrepeater.diqkd.pipeline",
    "distill": "qrepeater.diqkd.pipeline",
    "read_party_record": "qrepeater.diqkd.records",
    "read_run": "qrepeater.diqkd.records",
    "write_party_record": "qrepeater.diqkd.records",
    "write_run": "qrepeater.diqkd.records",
    "DIQKDRun": "qrepeater.diqkd.rounds",
    "PartyRounds": "qrepeater.diqkd.rounds",
    "RunMetadata": "qrepeater.diqkd.rounds",
    "SettingDistribution": "qrepeater.diqkd.rounds",
    "simulate_from_preset": "qrepeater.diqkd.rounds",
    "simulate_rounds": "qrepeater.diqkd.rounds",
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
__all__ = [
    "AccumulatedEstimate",
    "BellEstimate",
    "DIQKDRun",
    "DistillConfig",
    "DistillReport",
    "DistillResult",
    "FiniteKeyResult",
    "PartyRounds",
    "ProtocolPoint",
    "RunMetadata",
    "SettingDistribution",
    "SettingProbabilities",
    "accumulate",
    "asymptotic_rate",
    "distill",
    "estimate_bell",
    "evaluate_protocol",
    "finite_key",
    "optimise_protocol",
    "read_party_record",
    "read_run",
    "simulate_from_preset",
    "simulate_rounds",
    "write_party_record",
    "write_run",
]

if TYPE_CHECKING:
    from qrepeater.diqkd.estimate import (
        AccumulatedEstimate,
        BellEstimate,
        accumulate,
        estimate_bell,
    )
    from qrepeater.diqkd.keyrate import (
        FiniteKeyResult,
        SettingProbabilities,
        asymptotic_rate,
        finite_key,
    )
    from qrepeater.diqkd.optimize import ProtocolPoint, evaluate_protocol, optimise_protocol
    from qrepeater.diqkd.pipeline import DistillConfig, DistillReport, DistillResult, distill
    from qrepeater.diqkd.records import (
        read_party_record,
        read_run,
        write_party_record,
        write_run,
    )
    from qrepeater.diqkd.rounds import (
        DIQKDRun,
        PartyRounds,
        RunMetadata,
        SettingDistribution,
        simulate_from_preset,
        simulate_rounds,
    )
