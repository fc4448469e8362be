"""Atomic file writes: a crash or an error mid-write never replaces a good file."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed over ``path``
    (with the permissions a new file would get), on any error it is removed. An OSError of the
    write (a full disk, an I/O error) is raised as one naming ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        cause = _os_error(err)
        if cause is None or cause.filename not in (None, name):  # not a write to tmp
            raise
        what = (
            "no space left on device"
            if cause.errno in (errno.ENOSPC, errno.EDQUOT)
            else (cause.strerror or str(cause))
        )  # OSError(errno, text) is the subclass for errno (PermissionError, ...)
        raise OSError(
            cause.errno, f"{what} writing {path} (a file there before is unchanged)"
        ) from err


def _os_error(err: BaseException | None) -> OSError | None:
    """The first OSError with an errno in ``err`` or the errors it came from (libraries such as
    torch raise their own error while handling the OSError)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno is not None:
            return err
        err = err.__cause__ or err.__context__
    return None
