"""Shared by the lag and consume tests: build local stores, brute-force expectations, run the
executable as a long-lived process."""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
import uuid

from eventodb_cli.domain.hashing import member_for
from eventodb_cli.domain.message import Message, canonical_json, new_message
from eventodb_cli.store.local import LocalStore


def fill_store(path: str, n: int, *, category: str = "account", streams: int = 200,
               seed: int = 1, other_every: int = 7, batch: int = 500) -> LocalStore:
    """Write ``n`` messages to ``category`` (random streams, uuid and small ids, some compound
    ``+retry`` ids), interleaved with messages of another category so global positions of the
    category have gaps. Returns the open store."""
    rnd = random.Random(seed)
    ids = [str(uuid.UUID(int=rnd.getrandbits(128))) for _ in range(streams // 2)]
    ids += [str(i) for i in range(streams - len(ids))]
    store = LocalStore(path, create=True)
    pending = []
    written = 0
    i = 0
    while written < n:
        i += 1
        if other_every and i % other_every == 0:
            pending.append(new_message(f"other-{rnd.randrange(10)}", "Noise", {"i": i}))
        else:
            sid = rnd.choice(ids)
            if rnd.random() < 0.1:
                sid += "+retry"
            pending.append(new_message(f"{category}-{sid}", "Deposited", {"i": i},
                                       id=str(uuid.UUID(int=rnd.getrandbits(128)))))
            written += 1
        if len(pending) >= batch:
            store.write_batch(pending)
            pending = []
    if pending:
        store.write_batch(pending)
    return store


def import_messages(store: LocalStore, rows: list[tuple[str, int, int]]) -> None:
    """Import (stream, global position, time ns) rows keeping global positions (sparse stores)."""
    versions: dict[str, int] = {}
    msgs = []
    for stream, gpos, t in rows:
        v = versions.get(stream, -1) + 1
        versions[stream] = v
        msgs.append(Message(str(uuid.uuid4()), stream, "Imported", v, gpos,
                            canonical_json({"g": gpos}), None, t))
    store.import_records(msgs)


def all_messages(store, category: str) -> list[Message]:
    """Every message of the category, read without any group filter."""
    return list(store.iter_category(category, 1, 1000))


def share(store, category: str, member: int, size: int) -> list[Message]:
    """Brute force: the member's share computed with member_for over the unfiltered read."""
    return [m for m in all_messages(store, category) if member_for(m.stream_name, size) == member]


def write_checkpoint(path: str, position: int, *, category="account", member=None, size=None,
                     updated_at="2026-11-28T06:00:00Z") -> None:
    obj = {"position": position, "updatedAt": updated_at}
    if category is not None:
        obj["category"] = category
    if member is not None:
        obj["member"] = member
    if size is not None:
        obj["size"] = size
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(obj, fh)


def read_checkpoint(path: str) -> dict:
    with open(path) as fh:
        return json.load(fh)


def start_exe(exe: str, *args, env=None, **kw) -> subprocess.Popen:
    """Start the executable in its own process group (so a kill takes its handlers too)."""
    full = dict(os.environ)
    if env:
        full.update(env)
    return subprocess.Popen([exe, *map(str, args)], env=full, start_new_session=True,
                            stdout=kw.pop("stdout", subprocess.PIPE),
                            stderr=kw.pop("stderr", subprocess.PIPE), **kw)


def wait_for(pred, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def lines(path: str) -> list[str]:
    try:
        with open(path) as fh:
            return [ln for ln in fh.read().splitlines() if ln]
    except FileNotFoundError:
        return []


def from_start(directory, category: str, size: int) -> None:
    """A checkpoint at position 1 (nothing processed yet) for every member of a group of
    ``size``: no member is ``missing``."""
    for m in range(size):
        write_checkpoint(os.path.join(str(directory), f"{category}.member-{m}-of-{size}.json"),
                         1, category=category, member=m, size=size)
