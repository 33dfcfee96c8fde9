"""Executors: where the pieces of a sweep run. One small interface, three back ends.

* :class:`LocalExecutor` (default): worker processes on this machine started with ``spawn``
  (never ``fork``: the parent may hold threads), one per core; needs only the core
  dependencies.
* :class:`DaskExecutor`: an existing Dask distributed cluster (``tcp://HOST:PORT``) or a
  ``LocalCluster`` it starts (``local:N``); needs the ``qrepeater[dask]`` extra.
* :class:`SerialExecutor`: in this process (debugging, baselines).

The sweep core only calls :meth:`submit`, :meth:`wait_any` and :meth:`close`, so every
back end runs the same code path on the same tasks and seeds, and writes the same store.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import multiprocessing
import os
import re
import signal
from collections.abc import Callable, Collection
from typing import Any, Protocol

from qrepeater.sweep._errors import ExecutorError


def default_workers() -> int:
    """Cores available to this process."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class Executor(Protocol):
    """What the sweep core needs from a back end."""

    slots: int
    description: str

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any: ...

    def wait_any(self, futures: Collection[Any], timeout: float) -> tuple[set[Any], set[Any]]: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


def _ignore_sigint() -> None:
    """Worker initialiser: Ctrl-C reaches the whole process group; the parent handles it (and
    stops the workers), so they do not each print a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class SerialExecutor:
    """Runs each call when submitted, in this process."""

    description = "serial (this process)"

    def __init__(self) -> None:
        self.slots = 1

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future[Any]:
        fut: cf.Future[Any] = cf.Future()
        try:
            fut.set_result(fn(*args))
        except Exception as exc:
            fut.set_exception(exc)
        return fut

    def wait_any(self, futures: Collection[Any], timeout: float) -> tuple[set[Any], set[Any]]:
        done, pending = cf.wait(futures, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return set(done), set(pending)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class LocalExecutor:
    """A pool of ``workers`` processes started with ``spawn`` (default: one per core)."""

    def __init__(self, workers: int | None = None) -> None:
        n = default_workers() if workers is None else int(workers)
        if n < 1:
            raise ExecutorError(f"workers must be >= 1, got {workers}")
        self.slots = n
        self.description = f"local processes ({n}, spawn)"
        self._pool = cf.ProcessPoolExecutor(
            max_workers=n,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_ignore_sigint,
        )

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future[Any]:
        return self._pool.submit(fn, *args)

    def wait_any(self, futures: Collection[Any], timeout: float) -> tuple[set[Any], set[Any]]:
        done, pending = cf.wait(futures, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return set(done), set(pending)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def abort(self) -> None:
        """Stop now (interrupt, error): running pieces are lost, stored ones are safe."""
        # concurrent.futures has no public way to stop running workers before Python 3.14
        for proc in list(getattr(self._pool, "_processes", {}).values()):
            proc.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """A Dask distributed client: ``tcp://HOST:PORT`` (existing scheduler) or ``local:N``
    (a ``LocalCluster`` of N single-threaded worker processes, closed with the executor)."""

    def __init__(self, scheduler: str, *, timeout_s: float = 10.0) -> None:
        try:
            dist: Any = importlib.import_module("distributed")
        except ImportError:
            raise ExecutorError(
                "the Dask scheduler needs the optional extra: pip install 'qrepeater[dask]'"
            ) from None
        self._cluster: Any = None
        m = re.fullmatch(r"local:(\d+)", scheduler)
        try:
            if m:
                n = int(m.group(1))
                if n < 1:
                    raise ExecutorError(f"local:N needs N >= 1, got {scheduler!r}")
                self._cluster = dist.LocalCluster(
                    n_workers=n,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                )
                self._client: Any = dist.Client(self._cluster)
            else:
                self._client = dist.Client(scheduler, timeout=timeout_s)
        except ExecutorError:
            raise
        except (OSError, TimeoutError) as exc:
            if self._cluster is not None:
                self._cluster.close()
            raise ExecutorError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None
        nthreads = self._client.nthreads()
        self.slots = max(1, sum(nthreads.values()))
        self.description = f"dask {scheduler} ({len(nthreads)} workers, {self.slots} threads)"

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._client.submit(fn, *args, pure=False)

    def wait_any(self, futures: Collection[Any], timeout: float) -> tuple[set[Any], set[Any]]:
        wait: Any = importlib.import_module("distributed").wait
        try:
            done, pending = wait(list(futures), timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            return set(), set(futures)
        return set(done), set(pending)

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    def abort(self) -> None:
        """Stop now: closing the client releases its futures, and the scheduler forgets the
        work nobody waits for."""
        self.close()


_SCHEDULER = re.compile(r"(tcp|tls|ws|wss|inproc)://\S+|local:\d+|processes(:\d+)?|serial")


def check_scheduler(scheduler: str | None) -> None:
    """Raise :class:`ExecutorError` unless ``scheduler`` is a known form (checks syntax only)."""
    if scheduler is not None and not _SCHEDULER.fullmatch(scheduler):
        raise ExecutorError(
            f"unknown scheduler {scheduler!r}; use tcp://HOST:PORT, local:N, processes[:N] "
            "or serial"
        )


def make_executor(scheduler: str | None = None, *, workers: int | None = None) -> Executor:
    """The executor for a ``--scheduler`` value: None or ``processes[:N]`` (local spawn
    processes), ``serial``, ``local:N`` (Dask LocalCluster) or ``tcp://HOST:PORT`` (Dask)."""
    check_scheduler(scheduler)
    if scheduler is None:
        return LocalExecutor(workers)
    if scheduler == "serial":
        return SerialExecutor()
    if scheduler.startswith("processes"):
        _, _, n = scheduler.partition(":")
        return LocalExecutor(int(n) if n else workers)
    return DaskExecutor(scheduler)
