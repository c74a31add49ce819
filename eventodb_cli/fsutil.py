"""Atomic file writes: temp file in the same directory, (fsync,) rename, (fsync of the directory).

A crash of the process leaves the old file or the new one, never a torn one: the rename is
atomic, and what a killed process wrote is in the page cache, which outlives it. ``durable``
(the default) adds the fsyncs that make the new file survive a power loss or an OS crash too.
Used for checkpoints (durable at most every ``--sync-interval``, services/checkpoints.py), the
profile config and export manifests (always durable).
"""

from __future__ import annotations

import os
import tempfile


def atomic_write_text(path: str, text: str, *, mode: int = 0o644,
                      dir_mode: int = 0o777, prefix: str = ".tmp-",
                      durable: bool = True) -> None:
    """Replace ``path`` with ``text`` atomically; the file gets ``mode`` (0600 for secrets).
    ``durable``: fsync the file before the rename and the directory after it."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=dir_mode, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        fsync_directory(directory)


def fsync_directory(directory: str) -> None:
    """fsync a directory (a rename in it is then durable); errors are ignored (some file
    systems cannot open or fsync a directory)."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def make_durable(path: str) -> None:
    """Make the file at ``path`` as it is now (written and renamed into place without fsync)
    durable: fsync it, then its directory."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_directory(os.path.dirname(os.path.abspath(path)))


_exchange_ok = True  # renameat2(RENAME_EXCHANGE) works here (until it says it does not)
_renameat2 = None


def _exchange(a: str, b: str) -> bool:
    """Swap the files at ``a`` and ``b`` in one atomic step (Linux ``renameat2`` with
    ``RENAME_EXCHANGE``). False when ``b`` does not exist or the system or file system cannot
    (the caller renames then)."""
    global _exchange_ok, _renameat2
    if not _exchange_ok:
        return False
    if _renameat2 is None:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            fn = libc.renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                           ctypes.c_uint]
            fn.restype = ctypes.c_int
            _renameat2 = (fn, ctypes.get_errno)
        except (OSError, AttributeError, ImportError):
            _exchange_ok = False
            return False
    fn, get_errno = _renameat2
    if fn(-100, os.fsencode(a), -100, os.fsencode(b), 2) == 0:  # AT_FDCWD, RENAME_EXCHANGE
        return True
    err = get_errno()
    import errno

    if err == errno.ENOENT:
        return False
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV, errno.EPERM):
        _exchange_ok = False
        return False
    raise OSError(err, os.strerror(err), b)


def replace_quick(path: str, data: bytes, tmp: str, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically, without fsync: what a SIGKILL cannot undo (the
    page cache outlives the process), in a few system calls. ``tmp`` is a name in the same
    directory for the new file (a leftover of a killed writer is replaced). The new file is
    swapped in with ``renameat2(RENAME_EXCHANGE)`` and the old one unlinked (a rename over an
    existing file makes ext4 start writing the new file's data out, ~100 us); elsewhere it is
    ``os.replace``. A reader that opened the old file reads it whole."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, mode)
    except FileExistsError:
        os.unlink(tmp)
        fd = os.open(tmp, flags, mode)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        if _exchange(tmp, path):
            os.unlink(tmp)  # the old file
        else:
            os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
