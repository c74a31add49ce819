"""Issue 12 export: ``to_record_line`` keeps the JSON text of stream names and types and the
last time's text (an export repeats them); the lines stay byte-identical to formatting each
field afresh, and ``write_records`` (chunked) writes and hashes exactly those lines."""

from __future__ import annotations

import io
import json

from eventodb_cli.domain import records
from eventodb_cli.domain.message import Message, format_time
from eventodb_cli.domain.records import to_record_line
from eventodb_cli.services.transfer import _hasher, write_records

ODD = ["plain", 'quote " backslash \\ slash /', "\n\r\t\b\f\x01\x1f\x7f",
       "\u2028\u2029 é ☃ \U0001f600", "naïve"]
TIMES = [-1, 0, 1_700_000_000 * 10**9, 1_700_000_000 * 10**9 + 100, 1_700_000_000_123_456_789,
         1_700_000_000_120_000_000, 9_000_000_000 * 10**9 + 999_999_999]
_enc = json.JSONEncoder(ensure_ascii=False).encode


def _fresh(m: Message) -> str:
    return ('{"id":%s,"stream":%s,"type":%s,"pos":%d,"gpos":%d,"data":%s,"meta":%s,"time":"%s"}'
            % (_enc(m.id), _enc(m.stream_name), _enc(m.type), m.position, m.global_position,
               m.data, "null" if m.metadata is None else m.metadata, format_time(m.time)))


def _messages(n: int) -> list[Message]:
    out = []
    for i in range(n):
        odd = ODD[i % len(ODD)]
        out.append(Message(f"id-{odd}-{i}", f"cat{i % 3}-{odd}{i % 7}", f"T{odd}", i // 3, i + 1,
                           '{"i":%d}' % i, None if i % 2 else '{"m":1}',
                           TIMES[(i // 4) % len(TIMES)]))
    return out


def test_record_lines_are_byte_identical_with_the_caches(monkeypatch):
    monkeypatch.setattr(records, "_CACHE_MAX", 5)  # the text cache fills and clears often
    for m in _messages(500):
        assert to_record_line(m) == _fresh(m)


def test_write_records_chunks_write_and_hash_every_line():
    msgs = _messages(2_345)
    seen = []
    buf = io.BytesIO()
    res = write_records(iter(msgs), buf, on_progress=lambda n, last: seen.append((n, last)),
                        flush_every=1000)
    want = ("\n".join(_fresh(m) for m in msgs) + "\n").encode()
    assert buf.getvalue() == want
    h = _hasher()
    h.update(want)
    assert (res.count, res.first, res.last, res.nbytes, res.digest) == \
        (2_345, 1, 2_345, len(want), h.hexdigest())
    assert seen == [(1000, 1000), (2000, 2000), (2345, 2345)]
    empty = write_records(iter(()), io.BytesIO())
    assert (empty.count, empty.first, empty.last) == (0, None, None)


def test_wire_messages_decode_exactly_as_before():
    """Messages read from a server: data re-encoded with the prebuilt encoder, times of the
    server's ``Z`` form parsed through a per-second cache: the same values as the plain way."""
    from datetime import datetime, timedelta, timezone

    from eventodb_cli.domain.message import canonical_json, parse_time

    item = ["id-1", "acct-1", "T", 3, 9, {"b": [1.5, None], "a": "é\n"}, {"m": 1},
            "2026-12-03T23:12:01.120Z"]
    m = Message.from_category_wire(item)
    assert m.data == canonical_json(item[5]) and m.metadata == '{"m":1}'
    for text in ("2026-12-03T23:12:01Z", "2026-12-03T23:12:01.000000001Z",
                 "1969-12-31T23:59:59.999999999z", "1677-09-22T00:12:44Z", "2262-04-11T23:47:16Z"):
        y, rest = text[:19], text[19:].rstrip("Zz")
        dt = datetime.strptime(y, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
        secs = (dt - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(seconds=1)
        frac = int(rest[1:].ljust(9, "0")) if rest else 0
        assert parse_time(text) == secs * 1_000_000_000 + frac, text
