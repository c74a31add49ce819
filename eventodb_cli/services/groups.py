"""``verify-groups``: prove a consumer group partitions a category, through any Store.

One unfiltered read of the category and one read of each member's share, the member reads
bounded by the position the unfiltered read reached (a snapshot: messages written after it are
left out of every member read, so a live category does not produce false alarms). The head is
not searched for first: on a server that costs ~2 log2(head) one-message reads, and on
EventoDB's SQLite backend a read from an early position costs the rest of the category; a
store that counts in one statement (Message DB) still gets its head first. Memory grows with
the number of streams: one message counter per stream and the member that returned it, never
the messages. On a server, only each message's stream name and global position are decoded
(``RemoteStore.category_stream_names``) and the member reads run a few at a time
(``read_concurrency``), so the server reads one page while this process counts another.

Checks, each a violation ``kind``:

- ``duplicate``: a stream returned to two or more members;
- ``wrong-member``: a stream returned by a member other than ``member_for`` predicts (a server
  with another hash, or the full name hashed instead of the cardinal id);
- ``gap``: a stream with an id returned to no member;
- ``compound-split``: ``account-1+retry`` returned by another member than ``account-1``;
- ``returned-without-id``: a stream without an id (``account``) returned to a member;
- ``count-mismatch``: a member returned a different number of messages of a stream than the
  unfiltered read holds;
- ``unknown-stream``: a member returned a stream the unfiltered read does not hold (another
  category, or a stream that does not exist).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Callable

from ..domain.hashing import member_of_hash, stream_hash
from ..domain.message import NewMessage
from ..domain.scale import load_summary, pct
from ..domain.streams import cardinal_id, category as category_of, stream_id

READ_BATCH = 10_000  # the server's largest batchSize
KINDS = ("duplicate", "wrong-member", "gap", "compound-split", "returned-without-id",
         "count-mismatch", "unknown-stream")

Progress = Callable[[str, int, int | None], None]  # (phase, global position reached, head)


def write_test_data(store, category: str, k: int, *, batch: int = 1000) -> list[str]:
    """Write K streams ``category-<uuid4>`` with one ``Test`` message each (the seed's check).
    Returns the stream names."""
    import uuid

    names = [f"{category}-{uuid.uuid4()}" for _ in range(k)]
    for i in range(0, k, batch):
        store.write_batch([NewMessage(s, "Test", "{}", None, str(uuid.uuid4()))
                           for s in names[i:i + batch]])
    return names


def _stream_pages(store, category: str, member: int | None, size: int | None,
                  until: int | None):
    """(stream names of a page, global position reached), page by page. A store that reads
    names alone (``category_stream_names``: a server's answer without building Messages) does;
    any other pages through the reads a consumer would make."""
    names = getattr(store, "category_stream_names", None)
    if names is not None:
        return names(category, 1, READ_BATCH, member, size, until=until)
    return ((map(_stream_name, batch), reached) for batch, reached in
            store.category_pages(category, 1, READ_BATCH, None, member, size, until=until))


def _stream_name(m) -> str:
    return m.stream_name


def _read_counts(store, category: str, head: int, member: int | None, size: int | None,
                 phase: str, on_progress: Progress | None,
                 stop: threading.Event | None = None) -> dict[str, int]:
    """Messages per stream in ``category`` (or a member's share) up to ``head``. A store that can
    count in one statement (Message DB: ``stream_counts`` with its own hash_64/cardinal_id)
    answers itself; the generic path pages through the reads a consumer would make."""
    fast = getattr(store, "stream_counts", None)
    if fast is not None:
        counts = fast(category, head, member, size)
        if on_progress:
            on_progress(phase, head, head)
        return counts
    counts: Counter[str] = Counter()
    for names, reached in _stream_pages(store, category, member, size, head):
        counts.update(names)  # C loop
        if on_progress:
            on_progress(phase, reached, head)
        if stop is not None and stop.is_set():
            raise _Stopped
    if on_progress:
        on_progress(phase, head, head)
    return counts


def _open_read(store, category: str, on_progress: Progress | None
               ) -> tuple[dict[str, int], int | None]:
    """Messages per stream of the whole category, and the highest global position read (None:
    empty): the head the member reads stop at."""
    counts: Counter[str] = Counter()
    head = None
    for names, reached in _stream_pages(store, category, None, None, None):
        counts.update(names)
        head = reached
        if on_progress:
            on_progress("unfiltered read", reached, reached)
    return counts, head


class _Stopped(Exception):
    """A member read ended early because another one failed."""


def _member_reads(store, category: str, head: int, size: int,
                  on_progress: Progress | None) -> list[dict[str, int]]:
    """Each member's counts, in member order. A store that takes concurrent reads
    (``read_concurrency``, a server) gets up to that many at once, so the server reads one
    member's page while this process counts another's. The result does not depend on the
    interleaving; on a failure the others stop at their next page and the lowest member's error
    is raised (what a one-by-one read would have raised first)."""
    workers = min(size, int(getattr(store, "read_concurrency", 1) or 1))
    if workers <= 1 or getattr(store, "stream_counts", None) is not None:
        return [_read_counts(store, category, head, m, size, f"member {m}/{size}", on_progress)
                for m in range(size)]
    from concurrent.futures import ThreadPoolExecutor, wait

    if on_progress is not None:
        lock = threading.Lock()
        shown = on_progress

        def on_progress(phase: str, done: int, total: int | None) -> None:  # noqa: F811
            with lock:
                shown(phase, done, total)

    stop = threading.Event()

    def read(m: int) -> dict[str, int]:
        if stop.is_set():  # queued behind the first ``workers`` when another failed
            raise _Stopped
        try:
            return _read_counts(store, category, head, m, size, f"member {m}/{size}",
                                on_progress, stop)
        except BaseException:
            stop.set()  # the others end at their next page
            raise

    ex = ThreadPoolExecutor(workers, thread_name_prefix="eventodb-verify")
    try:
        futures = [ex.submit(read, m) for m in range(size)]
        wait(futures)
    except BaseException:  # Ctrl-C: start nothing more; the reads under way end at their page
        stop.set()
        ex.shutdown(wait=True, cancel_futures=True)
        raise
    ex.shutdown(wait=True)
    for f in futures:
        e = f.exception()
        if e is not None and not isinstance(e, _Stopped):
            raise e
    return [f.result() for f in futures]


def verify(store, category: str, size: int, *, on_progress: Progress | None = None) -> dict:
    """The verify-groups report (JSON contract): ``ok``, per-member loads, every violation."""
    if size < 1:
        raise ValueError("size must be >= 1")
    totals: dict[str, int] = {}
    if getattr(store, "stream_counts", None) is not None:
        head = store.category_head(category)
        if head is not None:
            totals = _read_counts(store, category, head, None, None, "unfiltered read",
                                  on_progress)
    else:
        totals, head = _open_read(store, category, on_progress)
    violations: list[dict] = []
    returned: dict[str, int] = {}  # stream -> first member that returned it
    extra: dict[str, list[int]] = {}  # stream -> every member, when more than one returned it
    members = []
    shares = [{}] * size if head is None else _member_reads(store, category, head, size,
                                                            on_progress)
    for member, got in enumerate(shares):
        msgs = 0
        for s, c in got.items():
            msgs += c
            first = returned.get(s)
            if first is None:
                returned[s] = member
            else:
                extra.setdefault(s, [first]).append(member)
            total = totals.get(s)
            if total is None:
                foreign = category != "" and category_of(s) != category
                violations.append({
                    "kind": "unknown-stream", "stream": s, "members": [member],
                    "expected": None if foreign else _expected(s, size),
                    "messages": c,
                    "detail": (f"member {member} returned {c} message(s) of a stream of "
                               f"category {category_of(s)!r}" if foreign else
                               f"member {member} returned {c} message(s) of a stream the "
                               "unfiltered read does not hold"),
                })
            elif c != total:
                violations.append({
                    "kind": "count-mismatch", "stream": s, "members": [member],
                    "expected": _expected(s, size), "messages": c, "unfilteredMessages": total,
                    "detail": f"member {member} returned {c} message(s), the unfiltered read "
                              f"holds {total}",
                })
        members.append({"member": member, "streams": len(got), "messages": msgs})

    messages = sum(totals.values())
    unassigned = 0
    for s, total in totals.items():
        exp = member_of_hash(stream_hash(s), size)
        got_members = extra.get(s) or ([returned[s]] if s in returned else [])
        if exp is None:
            unassigned += 1
            if got_members:
                violations.append({
                    "kind": "returned-without-id", "stream": s, "members": got_members,
                    "expected": None,
                    "detail": f"a stream without an id belongs to no member; returned to "
                              f"{_members(got_members)}",
                })
            continue
        if not got_members:
            v = {"kind": "gap", "stream": s, "members": [], "expected": exp, "messages": total,
                 "detail": f"no member returned it ({total} message(s)); member {exp} should"}
            if cardinal_id(s) == "":
                v["detail"] += (" (empty cardinal id: Message DB hashes '', EventoDB's Go "
                                "SQLite backend gives such streams to no member)")
            violations.append(v)
            continue
        if len(got_members) > 1:
            violations.append({
                "kind": "duplicate", "stream": s, "members": got_members, "expected": exp,
                "detail": f"returned to {_members(got_members)}; only member {exp} should",
            })
        wrong = [mm for mm in got_members if mm != exp]
        if wrong:
            violations.append({
                "kind": "wrong-member", "stream": s, "members": wrong, "expected": exp,
                "detail": f"returned to {_members(wrong)}, but abs(hash64("
                          f"{cardinal_id(s)!r})) % {size} = {exp}",
            })
        sid = stream_id(s)
        if sid is not None and "+" in sid:
            base = f"{category_of(s)}-{cardinal_id(s)}"
            base_members = extra.get(base) or ([returned[base]] if base in returned else None)
            if base_members is not None and sorted(base_members) != sorted(got_members):
                violations.append({
                    "kind": "compound-split", "stream": s, "members": got_members,
                    "expected": exp, "cardinalStream": base, "cardinalMembers": base_members,
                    "detail": f"returned to {_members(got_members)} but {base} to "
                              f"{_members(base_members)}; both belong to member {exp}",
                })

    loads = [m["messages"] for m in members]
    member_total = sum(loads)
    for m in members:
        m["share"] = pct(m["messages"], member_total)
    counts = {k: 0 for k in KINDS}
    for v in violations:
        counts[v["kind"]] += 1
    order = {k: i for i, k in enumerate(KINDS)}
    violations.sort(key=lambda v: (order[v["kind"]], v["stream"]))
    return {
        "ok": not violations,
        "category": category,
        "size": size,
        "head": head,
        "streams": len(totals),
        "messages": messages,
        "unassignedStreams": unassigned,
        "members": members,
        "load": load_summary(loads),
        "violationCounts": {k: c for k, c in counts.items() if c},
        "violations": violations,
    }


def _expected(stream: str, size: int) -> int | None:
    return member_of_hash(stream_hash(stream), size)


def _members(ms: list[int]) -> str:
    return ("member " if len(ms) == 1 else "members ") + ", ".join(map(str, ms))
