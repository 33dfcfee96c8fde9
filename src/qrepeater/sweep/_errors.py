"""Errors of the sweep layer (all :class:`~qrepeater.errors.QRepeaterError`, so the CLI turns
them into one line and exit status 2)."""

from __future__ import annotations

from qrepeater.errors import QRepeaterError


class SpecError(QRepeaterError, ValueError):
    """A sweep specification is invalid (unknown model or parameter, empty axis, bad value)."""


class StoreError(QRepeaterError):
    """A results store is unreadable, corrupt, or belongs to other inputs (version, preset)."""


class MergeError(StoreError):
    """Statistics of different tasks (different strong ids) were asked to merge."""


class ExecutorError(QRepeaterError):
    """The executor cannot be set up (bad scheduler address, cluster unreachable, no Dask)."""
