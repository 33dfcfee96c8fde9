"""Small file-system helpers shared by the layers that write files: the one owner of atomic and
durable writes (presets, records, key files, authentication-pool positions, CLI outputs)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_new_durable(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` (it must not exist) with permission bits ``mode`` from the first byte,
    write ``data`` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """fsync a folder, so that a rename or creation inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644, durable: bool = False
) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename, so a
    reader never sees a partial file; the file has permission bits ``mode`` from its creation
    (no moment with wider permissions). The file is always fsynced; ``durable`` also fsyncs the
    folder, so the rename itself survives a crash. Errors name ``path``, never the temporary
    file."""
    target = Path(path)
    tmp: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(name)
        tmp.unlink()  # recreated with its final mode by write_new_durable
        write_new_durable(tmp, data, mode)
        os.replace(tmp, target)
        tmp = None
        if durable:
            fsync_dir(target.parent)
    except OSError as exc:
        # name the user's path, never the temporary file
        raise user_path_error(exc, target) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return target


def user_path_error(exc: OSError, target: Path) -> OSError:
    """``exc`` re-addressed to ``target`` (the path the user named), same class and errno."""
    err = type(exc)(exc.errno, exc.strerror or str(exc), str(target))
    return err if isinstance(err, OSError) else OSError(exc.errno, str(exc), str(target))
