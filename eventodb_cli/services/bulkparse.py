"""NDJSON lines into batches of ``NewMessage`` for ``write --file``: the one reading loop both
the in-process path and the parser process (``services/bulkproc.py``) run, so both accept,
refuse and count lines alike.

What a line is: the bytes up to and including ``\\n``. A blank line (only ASCII whitespace) is
skipped; any other line must be one JSON object (``domain/strictjson``) that
``new_message_from_record`` accepts, else ``BadLine`` names it. Lines up to ``skip`` (a resumed
run) are only hashed, and the file must still start with the bytes the earlier run recorded.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from ..domain import strictjson
from ..domain.message import NewMessage, new_message_from_record
from ..errors import EventoError, UsageError


class NoParser(Exception):
    """No parser process (services/bulkproc.py) could be started; nothing was read yet."""


class ParserFailed(EventoError):
    """The parser process ended without saying why (killed, out of memory)."""

    code = "PARSER_FAILED"


class BadLine(Exception):
    """Line ``lineno`` cannot be written: ``reason`` says why (the caller words the error)."""

    def __init__(self, lineno: int, reason: str):
        super().__init__(reason)
        self.lineno = lineno
        self.reason = reason


def digest_hex(h) -> str:
    return h.hexdigest()


class LineBatches:
    """Iterate ``lines`` as batches of ``batch_size`` messages.

    While a batch is yielded, ``lineno`` is the line that completed it, ``nbytes`` the bytes read
    so far and ``hasher`` (xxh3-128) the digest of those bytes (kept when ``hash_lines``, or for
    the ``skip`` lines of a resumed run). ``batch``/``pending`` are the messages and line numbers
    of the batch being collected (what an interruption or a bad line leaves unwritten); a
    yielded batch is replaced by fresh lists when the caller asks for the next one.
    ``salt``: lines without an id get ``derive(salt, lineno)`` (a server target). A caller may
    change ``batch_size`` between two batches (the parser process cuts batches into chunks)."""

    def __init__(self, lines: Iterable[bytes | str], batch_size: int, *, skip: int = 0,
                 prev: dict | None = None, file: str | None = None, hash_lines: bool = False,
                 salt: str | None = None, derive=None):
        from xxhash import xxh3_128

        self.lines = lines
        self.batch_size = batch_size
        self.skip = skip
        self.prev = prev
        self.file = file
        self.hash_lines = hash_lines
        self.salt = salt
        self.derive = derive
        self.hasher = xxh3_128()
        self.lineno = 0
        self.nbytes = 0
        self.batch: list[NewMessage] = []
        self.pending: list[int] = []
        self._raw: list = []  # lines read but not hashed yet (``digest`` hashes them)

    def digest(self) -> str:
        """The digest of the lines read so far."""
        raw = self._raw
        if raw:  # lines are hashed in one call per batch, not one each
            self.hasher.update(b"".join(raw) if isinstance(raw[0], bytes)
                               else "".join(raw).encode("utf-8"))
            raw.clear()
        return digest_hex(self.hasher)

    def __iter__(self) -> Iterator[tuple[list[NewMessage], list[int]]]:
        skip = self.skip
        size = self.batch_size
        hasher = self.hasher
        hash_lines = self.hash_lines
        salt = self.salt
        loads = strictjson.loads
        scan = strictjson._decoder.scan_once  # the strict decoder's own scanner
        surrogate = strictjson._SURROGATE_ESCAPE.search
        from_record = new_message_from_record
        batch = self.batch
        pending = self.pending
        keep = self._raw.append
        lineno = 0
        nbytes = 0
        try:
            for lineno, line in enumerate(self.lines, 1):
                nbytes += len(line)
                if lineno <= skip:
                    hasher.update(line if isinstance(line, bytes) else line.encode("utf-8"))
                    if lineno == skip:
                        self.nbytes = nbytes
                        self._check_prefix()
                    continue
                if hash_lines:
                    keep(line)
                # strictjson.loads without its layers for the usual line (one object, no
                # surrogate escape, nothing around it but whitespace after): the same decoder,
                # so the same value; any other line takes the whole way, for its exact error
                try:
                    text = line.decode("utf-8") if type(line) is bytes else line
                    rec, end = scan(text, 0)
                    if end != len(text) and text[end:].strip(" \t\n\r"):
                        raise ValueError
                    if "\\u" in text and surrogate(text):
                        raise ValueError
                except (ValueError, StopIteration, RecursionError):  # loads says which
                    if not line.strip():
                        continue
                    try:
                        rec = loads(line)
                    except ValueError as e:  # malformed, not UTF-8, NaN, 1e999, surrogate
                        raise BadLine(lineno, f"invalid JSON: {strictjson.error_text(e)}") \
                            from None
                try:
                    m = from_record(rec)
                except ValueError as e:
                    raise BadLine(lineno, str(e)) from None
                if salt is not None and not m.id:
                    m = m._replace(id=self.derive(salt, lineno))
                batch.append(m)
                pending.append(lineno)
                if len(batch) >= size:
                    self.lineno, self.nbytes = lineno, nbytes
                    yield batch, pending
                    batch = self.batch = []
                    pending = self.pending = []
                    size = self.batch_size  # the caller may size the next batch differently
        finally:
            self.lineno, self.nbytes = lineno, nbytes
        if batch:
            yield batch, pending
            self.batch = []
            self.pending = []

    def _check_prefix(self) -> None:
        """The file changed during the run: it no longer starts with the recorded bytes."""
        prev = self.prev
        if self.nbytes != prev["bytes"] or self.digest() != prev["digest"]:
            raise UsageError(f"{self.file} changed while it was read: cannot resume; nothing "
                             "written")
