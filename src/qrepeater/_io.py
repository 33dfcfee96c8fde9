"""Small file-system helpers shared by the layers that write files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename, so a
    reader never sees a partial file; the file gets permission bits ``mode``."""
    target = Path(path)
    tmp: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except OSError as exc:
        # name the user's path, never the temporary file
        raise user_path_error(exc, target) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return target


def user_path_error(exc: OSError, target: Path) -> OSError:
    """``exc`` re-addressed to ``target`` (the path the user named), same class and errno."""
    err = type(exc)(exc.errno, exc.strerror or str(exc), str(target))
    return err if isinstance(err, OSError) else OSError(exc.errno, str(exc), str(target))
