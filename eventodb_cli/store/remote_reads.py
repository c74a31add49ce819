"""Reads of the remote store: streams, categories and namespace listings over ``POST /rpc``."""

from __future__ import annotations

from typing import Any

from ..domain.message import Message
from .remote_http import MAX_BATCH


class RemoteReads:
    """The read methods of ``RemoteStore`` (needs ``RemoteHttp``'s ``_rpc`` and ``_bad_shape``)."""

    # reads a caller may run at once, each on its own keep-alive connection (verify-groups'
    # member reads): the server reads one page while this process decodes another
    read_concurrency = 4

    def _messages(self, items: Any, what: str, stream: str | None) -> list[Message]:
        if not isinstance(items, list):
            raise self._bad_shape(what, items)
        try:
            if stream is None:
                return [Message.from_category_wire(x) for x in items]
            return [Message.from_stream_wire(stream, x) for x in items]
        except (TypeError, ValueError, IndexError, AttributeError):
            raise self._bad_shape(what, items[:2]) from None

    def stream_get(self, stream, position=0, global_position=None, batch_size=1000):
        if batch_size is not None and batch_size > MAX_BATCH:
            out: list[Message] = []
            while len(out) < batch_size:
                want = min(MAX_BATCH, batch_size - len(out))
                page = self.stream_get(stream, position, global_position, want)
                out += page
                if len(page) < want:
                    break
                if global_position is not None:
                    global_position = page[-1].global_position + 1
                else:
                    position = page[-1].position + 1
            return out
        opts: dict[str, Any] = {}
        if global_position is not None:
            opts["globalPosition"] = global_position
        elif position:
            opts["position"] = position
        if batch_size is None or batch_size <= 0:
            opts["batchSize"] = -1
        elif batch_size != 1000:
            opts["batchSize"] = batch_size
        args = [stream, opts] if opts else [stream]
        what = f"stream.get {stream}"
        return self._messages(self._rpc("stream.get", *args, what=what), what, stream)

    def stream_last(self, stream, type=None):
        args = [stream, {"type": type}] if type else [stream]
        what = f"stream.last {stream}"
        v = self._rpc("stream.last", *args, what=what)
        if v is None:
            return None
        return self._messages([v], what, stream)[0]

    def stream_version(self, stream):
        what = f"stream.version {stream}"
        v = self._rpc("stream.version", stream, what=what)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self._bad_shape(what, v)
        return int(v)

    def category_pages(self, category, position=1, batch_size=1000, correlation=None,
                       member=None, size=None, until=None):
        """Pages of a category, as ``Store.category_pages``, except that a short page is never
        taken for the end: a server's backend may return one mid-category (EventoDB's Pebble
        backend does), so the read goes on from the next position and only an empty page (or
        reaching ``until``) ends it. That costs one empty read at the end of an open read."""
        def fetch(pos):
            batch = self.category_get(category, pos, batch_size, correlation, member, size)
            return batch, batch[-1].global_position if batch else 0

        return _pages(fetch, position, batch_size, until,
                      lambda batch, u: [m for m in batch if m.global_position <= u])

    def category_stream_names(self, category, position=1, batch_size=MAX_BATCH, member=None,
                              size=None, until=None):
        """``category_pages`` with only the stream name of each message: pages of names (in
        global position order) and the position reached, with the same paging rules (a short
        page is not the end; ``until`` cuts). No ``Message`` is built: one ``json.loads`` of
        the answer and a list of its names (~1 us a message instead of ~10), for readers that
        need nothing else (verify-groups). Only the names and global positions are checked."""
        what = f"category.get {category}"
        batch_size = min(batch_size, MAX_BATCH) if batch_size and batch_size > 0 else MAX_BATCH

        def fetch(pos):
            items = self._rpc("category.get", *self._category_args(
                category, pos, batch_size, None, member, size), what=what)
            if not isinstance(items, list):
                raise self._bad_shape(what, items)
            if not items:
                return items, 0
            try:
                last = items[-1][4]
            except (TypeError, IndexError, KeyError):
                raise self._bad_shape(what, items[-1:]) from None
            if type(last) is not int:
                raise self._bad_shape(what, items[-1:])
            return items, last

        def cut(items, u):
            try:
                return [x for x in items if x[4] <= u]
            except (TypeError, IndexError, KeyError):
                raise self._bad_shape(what, items[:2]) from None

        for items, reached in _pages(fetch, position, batch_size, until, cut):
            try:
                names = [x[1] for x in items]
            except (TypeError, IndexError, KeyError):
                raise self._bad_shape(what, items[:2]) from None
            if not all(type(n) is str for n in names):
                raise self._bad_shape(what, [x for x in items if type(x[1]) is not str][:1])
            yield names, reached

    def category_get(self, category, position=1, batch_size=1000, correlation=None,
                     member=None, size=None):
        if batch_size is not None and batch_size > MAX_BATCH:
            out: list[Message] = []
            while len(out) < batch_size:
                want = min(MAX_BATCH, batch_size - len(out))
                page = self.category_get(category, position, want, correlation, member, size)
                out += page
                if len(page) < want:
                    break
                position = page[-1].global_position + 1
            return out
        args = self._category_args(category, position, batch_size, correlation, member, size)
        what = f"category.get {category}"
        return self._messages(self._rpc("category.get", *args, what=what), what, None)

    @staticmethod
    def _category_args(category, position, batch_size, correlation, member, size) -> list:
        """The arguments of one ``category.get`` (options the caller did not give left out)."""
        opts: dict[str, Any] = {}
        if position != 1:
            opts["position"] = position
        if batch_size is None or batch_size <= 0:
            opts["batchSize"] = -1
        elif batch_size != 1000:
            opts["batchSize"] = batch_size
        if correlation:
            opts["correlation"] = correlation
        if member is not None or size is not None:
            group = {}
            if member is not None:
                group["member"] = member
            if size is not None:
                group["size"] = size
            opts["consumerGroup"] = group
        return [category, opts] if opts else [category]

    # --- namespace listings (both stores) -----------------------------------------------------
    def list_streams(self, prefix: str = "", cursor: str = "", limit: int = 100) -> list[dict]:
        opts: dict[str, Any] = {}
        if prefix:
            opts["prefix"] = prefix
        if cursor:
            opts["cursor"] = cursor
        if limit != 100:
            opts["limit"] = limit
        rows = self._rpc("ns.streams", *([opts] if opts else []))
        if not isinstance(rows, list):
            raise self._bad_shape("ns.streams", rows)
        return rows

    def list_categories(self) -> list[dict]:
        rows = self._rpc("ns.categories")
        if not isinstance(rows, list):
            raise self._bad_shape("ns.categories", rows)
        return rows

    def message_count(self) -> int:
        info = self.ns_info()
        try:
            return int(info["messageCount"])
        except (TypeError, KeyError, ValueError):
            raise self._bad_shape("ns.info", info) from None


def _pages(fetch, position, batch_size, until, cut):
    """The paging rules of a remote category read, whatever a page holds: ``fetch(position)``
    gives (page, its last global position); an empty page ends the read, a short one does not
    (EventoDB's Pebble backend returns them mid-category); ``until`` (inclusive) cuts the page
    that passes it (``cut(page, until)``) and ends the read there."""
    while True:
        batch, last = fetch(position)
        if not batch:
            return
        if until is not None and last > until:  # written after the snapshot
            batch = cut(batch, until)
        yield batch, last if until is None else min(last, until)
        if until is not None and last >= until:
            return
        if batch_size is None or batch_size <= 0:  # unlimited: the server gave everything
            return
        position = last + 1
