"""Server-sent streams of the remote store: ``GET /subscribe`` pokes and ``POST /import``."""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from ..errors import EventoError, Unreachable, UsageError
from .remote_http import _reason, _Transient, httpx
from .sse import BadEvent, event_json, parse_events, poke_from


class RemoteEvents:
    """``pokes`` and ``import_stream`` of ``RemoteStore`` (on ``RemoteHttp``'s httpx client)."""

    def pokes(self, *, stream: str | None = None, category: str | None = None,
              all: bool = False, position: int = 0, member: int | None = None,
              size: int | None = None, max_reconnects: int | None = None,
              on_connect=None) -> Iterator[dict]:
        """Pokes ``{"stream","position","globalPosition"}`` from ``GET /subscribe``.

        On a dropped connection: reconnect with backoff and resume after the last poke yielded
        (stream: stream position + 1; category/all: global position + 1), then read the messages
        written while disconnected and poke for them (the server replays only up to 1000 and
        ``all`` replays nothing), dropping any poke at or below the last one yielded: no gap, no
        repeat. The first connection fails after ``retries`` attempts; once connected, it
        reconnects without limit (or ``max_reconnects`` times in a row). ``on_connect(n)`` is
        called each time the server accepts the subscription (n = 1, 2, ...)."""
        kinds = (stream is not None) + (category is not None) + bool(all)
        if kinds != 1:
            raise UsageError("subscribe to one of: a stream, a category, or all")
        if (member is None) != (size is None):
            raise UsageError("member and size must be given together")
        if member is not None and stream is not None:
            raise UsageError("a consumer group (member/size) applies to a category only")
        by_stream_pos = stream is not None
        last: int | None = None
        connected = False
        connects = 0
        failures = 0
        what = "subscribe " + (f"stream {stream}" if stream is not None else
                               f"category {category}" if category is not None else "all")
        while True:
            params: dict[str, Any] = {}
            if stream is not None:
                params["stream"] = stream
            elif category is not None:
                params["category"] = category
                if member is not None:
                    params["consumer"] = member
                    params["size"] = size
            else:
                params["all"] = "true"
            start = position if last is None else last + 1
            if start:
                params["position"] = start
            error: EventoError | None = None
            try:
                failures += 1
                with self._open_sse(params, what, failures) as resp:
                    if resp.status_code != 200:
                        resp.read()
                        error = self._sse_error(resp, what)
                        if resp.status_code < 500:
                            raise error
                    else:
                        failures = 0
                        reconnect = connected
                        connected = True
                        connects += 1
                        if on_connect is not None:
                            on_connect(connects)
                        if reconnect and last is not None:
                            for p in self._catch_up(stream, category, all, last + 1, member,
                                                    size):
                                key = p["position"] if by_stream_pos else p["globalPosition"]
                                if key > last:
                                    last = key
                                    yield p
                        for ev in parse_events(resp.iter_lines()):
                            try:
                                p = poke_from(ev)
                            except BadEvent as e:
                                err = EventoError(self._redact(f"malformed poke from "
                                                               f"{self.url}: {e}"))
                                err.code = "MALFORMED_RESPONSE"
                                raise err from None
                            if p is None:
                                continue
                            key = p["position"] if by_stream_pos else p["globalPosition"]
                            if last is not None and key <= last:
                                continue
                            last = key
                            yield p
                        self._say(f"{what}: the server ended the stream; reconnecting")
            except _Transient as t:
                error = t.error
            except httpx.TransportError as e:
                error = self._transport_error(e, what, failures)
                self._say(f"{what}: connection lost ({_reason(e)}); reconnecting")
            if not connected and failures > self.retries:
                raise error or Unreachable(f"cannot subscribe at {self.url}")
            if max_reconnects is not None and failures > max_reconnects:
                raise error or Unreachable(f"{what}: connection lost at {self.url}")
            self._sleep(max(failures, 1))

    def _open_sse(self, params: dict, what: str, attempt: int):
        self._count()
        self._say(f"GET {self.url}/subscribe {what} position={params.get('position', 0)} "
                  f"(attempt {attempt})")
        try:
            return self.client.stream("GET", "/subscribe", params=params,
                                      headers={"Accept": "text/event-stream"},
                                      timeout=httpx.Timeout(self.timeout, read=None))
        except httpx.TransportError as e:  # pragma: no cover - stream() connects lazily
            raise _Transient(self._transport_error(e, what, attempt), False) from None

    def _sse_error(self, resp: httpx.Response, what: str) -> EventoError:
        ctype = resp.headers.get("content-type", "")
        if "json" in ctype:
            return self._error(resp, what)
        text = self._redact(" ".join(resp.text.split())[:200])
        if resp.status_code == 400:
            e: EventoError = UsageError(f"server rejected {what}: {text}")
        elif resp.status_code in (401, 403):
            e = Unreachable(f"authentication failed at {self.url}: {text}")
        else:
            e = EventoError(f"{what}: HTTP {resp.status_code}: {text}")
        e.code = f"HTTP_{resp.status_code}"
        return e

    def _catch_up(self, stream, category, all_, start, member, size) -> Iterator[dict]:
        if stream is not None:
            msgs = self.iter_stream(stream, start)
        else:
            msgs = self.iter_category("" if all_ else category, start, member=member, size=size)
        for m in msgs:
            yield {"stream": m.stream_name, "position": m.position,
                   "globalPosition": m.global_position}

    # --- bulk import --------------------------------------------------------------------------
    def import_stream(self, chunks: Iterable[bytes], force: bool = False) -> Iterator[dict]:
        """``POST /import`` with the NDJSON ``chunks`` streamed as the body; yields each
        ``data:`` event (``{"imported","gpos"}``, ``{"done",...}``, ``{"error",...}``). Not
        retried: the body is consumed once."""
        params = {"force": "true"} if force else None
        self._count()
        self._say(f"POST {self.url}/import{'?force=true' if force else ''}")
        try:
            with self.client.stream(
                "POST", "/import", params=params, content=_chunks(chunks),
                headers={"Content-Type": "application/x-ndjson"},
                timeout=httpx.Timeout(self.timeout, read=self.import_read_timeout),
            ) as resp:
                if resp.status_code != 200:
                    resp.read()
                    raise self._error(resp, "import")
                for ev in parse_events(resp.iter_lines()):
                    try:
                        yield event_json(ev)
                    except BadEvent as e:
                        err = EventoError(self._redact(f"malformed import event: {e}"))
                        err.code = "MALFORMED_RESPONSE"
                        raise err from None
        except httpx.TransportError as e:
            raise self._transport_error(e, "import", 1) from None


def _chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    for c in chunks:
        if c:
            yield c if isinstance(c, bytes) else c.encode("utf-8")
