"""Protocol-independent QKD post-processing: LDPC codes and reconciliation, verification,
privacy amplification, Wegman-Carter authentication, framing and transport, key files and the
key store.

Nothing here imports :mod:`qrepeater.diqkd`: these pieces would serve a BB84 link as well.
Names are re-exported lazily, so importing one submodule does not load the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qrepeater._lazy import lazy_exports

_LAZY: dict[str, str] = {
    "AmplifiedKey": "qrepeater.qkdpp.amplify",
    "amplify_keys": "qrepeater.qkdpp.amplify",
    "toeplitz_hash": "qrepeater.qkdpp.amplify",
    "AuthParams": "qrepeater.qkdpp.auth",
    "KeyPool": "qrepeater.qkdpp.auth",
    "AuthenticatedChannel": "qrepeater.qkdpp.channel",
    "Channel": "qrepeater.qkdpp.channel",
    "PublicChannel": "qrepeater.qkdpp.channel",
    "binary_entropy": "qrepeater.qkdpp.entropy",
    "ReconcileConfig": "qrepeater.qkdpp.reconciliation",
    "ReconcileResult": "qrepeater.qkdpp.reconciliation",
    "reconcile": "qrepeater.qkdpp.reconciliation",
    "VerificationParams": "qrepeater.qkdpp.verify",
    "verify_keys": "qrepeater.qkdpp.verify",
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
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

if TYPE_CHECKING:
    from qrepeater.qkdpp.amplify import AmplifiedKey, amplify_keys, toeplitz_hash
    from qrepeater.qkdpp.auth import AuthParams, KeyPool
    from qrepeater.qkdpp.channel import AuthenticatedChannel, Channel, PublicChannel
    from qrepeater.qkdpp.entropy import binary_entropy
    from qrepeater.qkdpp.reconciliation import ReconcileConfig, ReconcileResult, reconcile
    from qrepeater.qkdpp.verify import VerificationParams, verify_keys
