"""Protocol-independent QKD post-processing: LDPC codes and reconciliation, verification,
privacy amplification, Wegman-Carter authentication and the authenticated channel.

Nothing here imports :mod:`qrepeater.diqkd`: these pieces would serve a BB84 link as well.
"""

from qrepeater.qkdpp.amplify import AmplifiedKey, amplify_keys, toeplitz_hash
from qrepeater.qkdpp.auth import AuthParams, KeyPool
from qrepeater.qkdpp.channel import AuthenticatedChannel, Channel, PublicChannel
from qrepeater.qkdpp.entropy import binary_entropy
from qrepeater.qkdpp.reconciliation import ReconcileConfig, ReconcileResult, reconcile
from qrepeater.qkdpp.verify import VerificationParams, verify_keys

__all__ = [
    "AmplifiedKey",
    "AuthParams",
    "AuthenticatedChannel",
    "Channel",
    "KeyPool",
    "PublicChannel",
    "ReconcileConfig",
    "ReconcileResult",
    "VerificationParams",
    "amplify_keys",
    "binary_entropy",
    "reconcile",
    "toeplitz_hash",
    "verify_keys",
]
