"""Atomic file writes: temp file in the same directory, fsync, rename, fsync of the directory.

A crash leaves the old file or the new one, never a torn one. Used for checkpoints, the profile
config and export manifests.
"""

from __future__ import annotations

import os
import tempfile


def atomic_write_text(path: str, text: str, *, mode: int = 0o644,
                      dir_mode: int = 0o777, prefix: str = ".tmp-") -> None:
    """Replace ``path`` with ``text`` atomically; the file gets ``mode`` (0600 for secrets)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=dir_mode, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
