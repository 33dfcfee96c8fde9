"""Device-independent QKD: rounds and records, Bell-test estimation, key-rate bounds, and the
distillation that composes the protocol-independent primitives of :mod:`qrepeater.qkdpp`."""

from qrepeater.diqkd.estimate import AccumulatedEstimate, BellEstimate, accumulate, estimate_bell
from qrepeater.diqkd.keyrate import (
    FiniteKeyResult,
    SettingProbabilities,
    asymptotic_rate,
    binary_entropy,
    finite_key,
)
from qrepeater.diqkd.optimize import ProtocolPoint, evaluate_protocol, optimise_protocol
from qrepeater.diqkd.pipeline import DistillConfig, DistillReport, DistillResult, distill
from qrepeater.diqkd.records import (
    read_key_bits,
    read_party_record,
    read_run,
    write_key_bits,
    write_key_pair,
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
from qrepeater.qkdpp.amplify import AmplifiedKey, amplify_keys, toeplitz_hash
from qrepeater.qkdpp.auth import AuthParams, KeyPool
from qrepeater.qkdpp.channel import AuthenticatedChannel, Channel, PublicChannel
from qrepeater.qkdpp.reconciliation import ReconcileConfig, ReconcileResult, reconcile
from qrepeater.qkdpp.verify import VerificationParams, verify_keys

__all__ = [
    "AccumulatedEstimate",
    "AmplifiedKey",
    "AuthParams",
    "AuthenticatedChannel",
    "BellEstimate",
    "Channel",
    "DIQKDRun",
    "DistillConfig",
    "DistillReport",
    "DistillResult",
    "FiniteKeyResult",
    "KeyPool",
    "PartyRounds",
    "ProtocolPoint",
    "PublicChannel",
    "ReconcileConfig",
    "ReconcileResult",
    "RunMetadata",
    "SettingDistribution",
    "SettingProbabilities",
    "VerificationParams",
    "accumulate",
    "amplify_keys",
    "asymptotic_rate",
    "binary_entropy",
    "distill",
    "estimate_bell",
    "evaluate_protocol",
    "finite_key",
    "optimise_protocol",
    "read_key_bits",
    "read_party_record",
    "read_run",
    "reconcile",
    "simulate_from_preset",
    "simulate_rounds",
    "toeplitz_hash",
    "verify_keys",
    "write_key_bits",
    "write_key_pair",
    "write_party_record",
    "write_run",
]
