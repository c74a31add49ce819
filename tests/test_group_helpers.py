"""Shared pieces of the group command tests (no tests here): a target on a real local store or a
real ``eventodb serve``, unique category names, and message writers."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from eventodb_cli.domain.hashing import member_for
from eventodb_cli.domain.message import NewMessage
from eventodb_cli.store.base import Store


@dataclass
class GTarget:
    kind: str
    args: list
    store: Store


def new_category(prefix: str = "grp") -> str:
    return f"{prefix}{secrets.token_hex(5)}"


def target_for(request, kind: str, tmp_path) -> GTarget:
    if kind == "local":
        from eventodb_cli.store.local import LocalStore

        path = str(tmp_path / "group-store.db")
        st = LocalStore(path, create=True)
        request.addfinalizer(st.close)
        return GTarget("local", ["--store", path], st)
    from eventodb_cli.store.remote import RemoteStore

    srv = request.getfixturevalue("server")
    st = RemoteStore(srv.url, srv.token)
    request.addfinalizer(st.close)
    return GTarget("remote", ["--url", srv.url, "--token", srv.token], st)


def write_messages(store: Store, category: str, n: int, *, streams: int = 17,
                   start: int = 0) -> list:
    """``n`` messages over ``streams`` streams ``CATEGORY-<k>``; returns the write results."""
    msgs = [NewMessage(f"{category}-{(start + i) % streams}", "Happened",
                       '{"i":%d}' % (start + i)) for i in range(n)]
    return store.write_batch(msgs)


def share_after(store: Store, category: str, member: int, size: int, after: int) -> int:
    """Independent count: read the whole category and hash each stream name here."""
    return sum(1 for m in store.iter_category(category)
               if m.global_position > after and member_for(m.stream_name, size) == member)
