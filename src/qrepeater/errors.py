"""Exception hierarchy of qrepeater.

Every error the library raises on bad input derives from :class:`QRepeaterError`, so the CLI can
turn any of them into a one-line message and exit status 2. Each subclass names one kind of
problem, so callers can catch exactly what they can handle.
"""

from __future__ import annotations

from typing import Any


class QRepeaterError(Exception):
    """Base class of every error qrepeater raises on purpose."""


class ParameterError(QRepeaterError, ValueError):
    """A physical or protocol parameter is outside its allowed domain."""


class PresetError(QRepeaterError):
    """A preset cannot be found, parsed or validated (unknown name, missing or misspelt key)."""


class CalibrationError(QRepeaterError):
    """The calibration targets cannot be met by the model (no solution in the physical domain)."""


class RecordError(QRepeaterError):
    """A round-record or key file is malformed, corrupt, or inconsistent with its partner."""


class RecordValueError(RecordError):
    """A value outside its domain (setting, outcome, herald, time, key bit) or a null."""


class RecordSchemaError(RecordError):
    """Columns missing, extra, out of order or of the wrong type."""


class CorruptRecordError(RecordError):
    """The file cannot be read as a record (not Parquet, truncated, bad key-file header, a
    folder where a file is expected, a key set whose manifest does not match its files)."""


class RecordNotFoundError(RecordError, FileNotFoundError):
    """The record file does not exist."""


class OutputError(QRepeaterError):
    """An output location cannot be used: it exists and is not empty (without ``force``), is a
    file where a folder is expected, or cannot be written."""


class ProtocolAbort(QRepeaterError):  # noqa: N818 - an abort is an outcome, not a bug
    """A protocol run must abort (Bell violation too low, QBER too high, verification failed).

    ``reason`` is a short machine-readable code, ``str(exc)`` the human explanation and
    ``details`` public figures computed before the abort (for the report), if any.
    """

    def __init__(self, reason: str, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.details: dict[str, Any] = dict(details or {})


class AuthenticationError(ProtocolAbort):
    """A classical message failed authentication (tampered, reordered, replayed, key exhausted)."""

    def __init__(self, message: str) -> None:
        super().__init__("authentication", message)


class ReconciliationError(QRepeaterError):
    """Information reconciliation could not be set up (impossible rate, block length or QBER)."""


class KeyStoreError(QRepeaterError):
    """The key store refused an operation (unknown block or key, wrong state, bad file)."""


class KeyNotFound(KeyStoreError):  # noqa: N818 - named for what the caller looks up
    """No block or key with the given id exists in the store."""


class KeyStateError(KeyStoreError):
    """A block or key is not in the state the operation needs (e.g. delivering an available key,
    staging different content under an existing block)."""


class KeyStoreEmpty(KeyStoreError):  # noqa: N818 - a condition, not a bug
    """Fewer available keys than requested: nothing was reserved."""


class TransportError(QRepeaterError):
    """The network link to the peer failed (closed, timed out, oversized or malformed frame)."""
