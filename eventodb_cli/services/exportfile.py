"""Export files as an import reads them: opening (gzip recognised by its magic bytes), the
manifest beside the file (``F.manifest.json``) and the check of the file against it, and a fast
scan for values strict JSON refuses. ``services/transfer.py`` writes these files and imports
them; this module only reads them.
"""

from __future__ import annotations

import gzip as _gzip
import json
import sys
import zlib
from typing import BinaryIO, Callable

from ..errors import EXIT_USAGE, BatchFailed, CheckFailed, UsageError

MANIFEST_FORMAT = "eventodb-export"
MANIFEST_VERSION = 1
DIGEST_ALGORITHM = "xxh3-64"
GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1024 * 1024


def manifest_path_for(path: str) -> str:
    return path + ".manifest.json"


def _hasher():
    from xxhash import xxh3_64

    return xxh3_64()


# --- reading export files -------------------------------------------------------------------------
def open_export(path: str) -> BinaryIO:
    """Open an export file (``-``: stdin) for reading its records; gzip is recognised by its
    magic bytes."""
    if path == "-":
        raw = sys.stdin.buffer
    else:
        try:
            raw = open(path, "rb")
        except OSError as e:
            raise UsageError(f"cannot read {path}: {e.strerror}") from None
    head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
    if head == GZIP_MAGIC:
        return _gzip.GzipFile(fileobj=raw, mode="rb")
    return raw


def read_manifest(path: str) -> dict:
    """Load and sanity-check a manifest (any problem: ``CheckFailed``, exit 1)."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        raise CheckFailed(f"cannot verify: no manifest at {path} (export writes one next to "
                          "its --output file; or give --manifest PATH)") from None
    except OSError as e:
        raise CheckFailed(f"cannot verify: cannot read manifest {path}: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise CheckFailed(f"cannot verify: manifest {path} is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        raise CheckFailed(f"cannot verify: {path} is not an eventodb export manifest")
    if doc.get("version") != MANIFEST_VERSION:
        raise CheckFailed(f"cannot verify: manifest version {doc.get('version')!r} is not "
                          f"supported (this eventodb reads version {MANIFEST_VERSION})")
    if doc.get("digestAlgorithm") != DIGEST_ALGORITHM:
        raise CheckFailed(f"cannot verify: unknown digest algorithm "
                          f"{doc.get('digestAlgorithm')!r} in {path}")
    for key in ("count", "bytes"):
        if not isinstance(doc.get(key), int) or isinstance(doc.get(key), bool):
            raise CheckFailed(f"cannot verify: manifest {path} has no valid {key!r}")
    if not isinstance(doc.get("digest"), str):
        raise CheckFailed(f"cannot verify: manifest {path} has no digest")
    return doc


def verify(path: str, manifest: dict,
           on_progress: Callable[[int], None] | None = None) -> dict:
    """Read the whole file and compare it with its manifest: byte length, xxh3-64 digest of the
    record bytes, record count. Raises ``CheckFailed`` with one line naming what is wrong."""
    name = path
    h = _hasher()
    nbytes = 0
    lines = 0
    last_byte = b""
    try:
        with open_export(path) as fh:
            while True:
                chunk = fh.read(_CHUNK)
                if not chunk:
                    break
                h.update(chunk)
                nbytes += len(chunk)
                lines += chunk.count(b"\n")
                last_byte = chunk[-1:]
                if on_progress:
                    on_progress(nbytes)
    except (OSError, EOFError, zlib.error) as e:
        if isinstance(e, OSError) and not isinstance(e, _gzip.BadGzipFile) and e.errno:
            raise CheckFailed(f"{name}: cannot read: {e.strerror}") from None
        raise CheckFailed(f"{name} is damaged: gzip data is corrupt or truncated ({e})") from None
    if nbytes and last_byte != b"\n":
        lines += 1  # a last line without its newline still counts as a (damaged) record
    want_bytes = manifest["bytes"]
    if nbytes < want_bytes:
        raise CheckFailed(
            f"{name} is truncated: {nbytes} of {want_bytes} bytes, {lines} of "
            f"{manifest['count']} records (manifest); nothing imported")
    if nbytes > want_bytes:
        raise CheckFailed(
            f"{name} is longer than its manifest says: {nbytes} bytes, expected {want_bytes}; "
            "nothing imported")
    digest = h.hexdigest()
    if digest != manifest["digest"]:
        raise CheckFailed(
            f"{name} is damaged: xxh3-64 digest {digest} does not match the manifest's "
            f"{manifest['digest']} (same length: bytes were changed); nothing imported")
    if lines != manifest["count"]:
        raise CheckFailed(f"{name}: {lines} records but the manifest says {manifest['count']}; "
                          "nothing imported")
    return {"bytes": nbytes, "count": lines, "digest": digest}


# What strictjson refuses, found fast in raw bytes with bytes.find (C speed): NaN, Infinity, a
# surrogate escape, and (on a copy with every digit turned into 0) an exponent of 3+ digits or a
# 4300-digit integer. A hit is only a suspect (it may be inside a string, or part of an id): the
# strict parser then decides, for that line only.
_ZEROS = bytes.maketrans(b"0123456789", b"0" * 10)
_LITERALS = (b"NaN", b"Infinity", b"\\ud", b"\\uD")
_NUMBERS = (b"0e000", b"0E000", b"0e+000", b"0E+000", b"0" * 4300)
_NOT_A_NUMBER_END = frozenset(b"abcdefABCDEF-\"")


def _suspects(body: bytes):
    """Offsets in ``body`` worth a strict parse of their line."""
    for lit in _LITERALS:
        at = body.find(lit)
        while at >= 0:
            yield at
            at = body.find(lit, at + 1)
    zeros = body.translate(_ZEROS)
    for pat in _NUMBERS:
        at = zeros.find(pat)
        while at >= 0:
            end = at + len(pat)
            while end < len(zeros) and zeros[end] == 48:  # the rest of the digit run
                end += 1
            if end >= len(body) or body[end] not in _NOT_A_NUMBER_END:  # not hex in an id
                yield at
            at = zeros.find(pat, end)


def check_strict_lines(path: str) -> None:
    """Refuse an export file holding a value strict JSON refuses (NaN, Infinity, 1e999, a lone
    surrogate, a 5000-digit integer) before anything is sent: a server's /import commits in
    batches, so finding it at line 2,501 would leave 2,500 lines imported. Only the lines
    ``_suspects`` flags are parsed (gzip is decompressed)."""
    from ..domain import strictjson

    lines_before = 0
    tail = b""
    try:
        with open_export(path) as fh:
            while True:
                chunk = fh.read(_CHUNK)
                buf = tail + chunk
                if not chunk:
                    end = len(buf)
                else:
                    end = buf.rfind(b"\n") + 1
                    if end == 0:
                        tail = buf
                        continue
                body, tail = buf[:end], buf[end:]
                checked: set[int] = set()
                for at in sorted(_suspects(body)):
                    start = body.rfind(b"\n", 0, at) + 1
                    if start in checked:
                        continue
                    checked.add(start)
                    stop = body.find(b"\n", at)
                    stop = len(body) if stop < 0 else stop
                    try:
                        strictjson.loads(body[start:stop])
                    except ValueError as e:
                        line = lines_before + body.count(b"\n", 0, start) + 1
                        raise BatchFailed(
                            f"import refused: line {line}: not valid JSON: "
                            f"{strictjson.error_text(e)}; nothing imported",
                            exit_code=EXIT_USAGE, line=line, written=0,
                            code="INVALID_JSON") from None
                lines_before += body.count(b"\n")
                if not chunk:
                    return
    except (OSError, EOFError, zlib.error):
        return  # the import itself reports a file it cannot read, with its line
