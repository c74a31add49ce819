"""The remote store: an EventoDB server (or ``eventodb serve``) over its HTTP API, on httpx.

- One pooled keep-alive ``httpx.Client`` per store; ``timeout`` per request attempt.
- Retries with exponential backoff and jitter on connection errors, timeouts and HTTP 5xx, for
  reads and for writes; never on 4xx. Writes are safe to retry because every message carries a
  client-chosen UUID: when a retry meets the server's duplicate-id error (500 BACKEND_ERROR
  ``UNIQUE constraint failed: messages.id``, PROTOCOL.md 5 and 11.4), or a version conflict
  caused by its own earlier attempt, the id is looked up in the stream and the write is reported
  with its real position.
- Options the caller did not give are left out of requests (the server rejects ``null``).
- Server error codes become the typed errors of ``errors.py``.
- The token is sent only as an ``Authorization: Bearer`` header and never appears in an error,
  a log line or a repr: every text that leaves this module goes through ``_redact``.

The store is split by responsibility: ``remote_http`` (connections, retries, errors, the only
module that imports httpx), ``remote_reads``, ``remote_events`` (SSE, import); this module
adds writes and namespaces.
"""

from __future__ import annotations

import re
import threading
import uuid
from typing import Any, Sequence

from ..domain.message import AlreadyWritten, NewMessage, WriteResult
from ..errors import DuplicateMessageId, EventoError, Unreachable, VersionConflict
from .base import Store
from .remote_events import RemoteEvents
from .remote_http import (MAX_BATCH, RemoteHttp, _dump_str, _dumps, _is_duplicate_id,  # noqa: F401
                          _mask_token, _reason, _Transient, httpx, namespace_of_token,
                          new_token)
from .remote_reads import RemoteReads

_CONFLICT_RE = re.compile(r"[Ee]xpected version (-?\d+), stream is at version (-?\d+)")


class RemoteStore(RemoteReads, RemoteEvents, RemoteHttp, Store):
    kind = "remote"

    # --- writes -------------------------------------------------------------------------------
    def write_batch(self, msgs: Sequence[NewMessage], *,
                    existing_ok: bool = False) -> list[WriteResult]:
        """Write messages, one ``stream.write`` each, in input order per stream. With
        ``concurrency`` > 1, different streams are written in parallel (each stream's messages
        one after another). On a failure nothing more is started; the error raised (the first
        failing message's) carries ``batch_written`` (how many of ``msgs`` were written) and
        ``batch_results`` (a list with a WriteResult or None per message); so does a
        KeyboardInterrupt, once the requests already sent have ended.

        ``existing_ok``: a message whose id is already in the store (an earlier, interrupted
        run wrote it) is not an error: its result is an ``AlreadyWritten``."""
        if not msgs:
            return []
        msgs = [m if m.id else m._replace(id=str(uuid.uuid4())) for m in msgs]
        results: list[WriteResult | None] = [None] * len(msgs)
        groups: dict[str, list[int]] = {}
        for i, m in enumerate(msgs):
            groups.setdefault(m.stream_name, []).append(i)
        failures: list[tuple[int, BaseException]] = []
        stop = threading.Event()

        def run(indices: list[int]) -> None:
            for i in indices:
                if stop.is_set():
                    return
                try:
                    results[i] = self._write_one(msgs[i], existing_ok)
                except BaseException as e:  # noqa: BLE001 - re-raised below
                    failures.append((i, e))
                    stop.set()
                    return

        workers = min(max(1, int(self.concurrency or 1)), len(groups))
        try:
            if workers <= 1:  # one request at a time, in input order
                for i in range(len(msgs)):
                    run([i])
                    if stop.is_set():
                        break
            else:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(workers, thread_name_prefix="eventodb-write") as ex:
                    try:
                        for f in [ex.submit(run, idx) for idx in groups.values()]:
                            f.result()
                    except BaseException:  # Ctrl-C: start nothing more, let running ones end
                        stop.set()
                        raise
        except BaseException as e:  # Ctrl-C, SIGTERM: say what landed
            e.batch_results = results
            e.batch_written = sum(r is not None for r in results)
            raise
        if failures:
            _i, err = min(failures, key=lambda f: f[0])
            err.batch_written = sum(r is not None for r in results)
            err.batch_results = results
            if len(msgs) > 1 and isinstance(err, EventoError):
                err.plain_message = err.message
                err.message += (f" ({err.batch_written} of the {len(msgs)} messages of this "
                                "batch were written)")
            raise err
        return results  # type: ignore[return-value]

    def _write_body(self, m: NewMessage) -> bytes:
        msg = '{"type":%s,"data":%s%s}' % (
            _dump_str(m.type), m.data, "" if m.metadata is None else ',"metadata":' + m.metadata)
        opts = ['"id":' + _dump_str(m.id)] if m.id else []
        if m.expected_version is not None:
            opts.append('"expectedVersion":%d' % m.expected_version)
        tail = ",{%s}" % ",".join(opts) if opts else ""
        return ('["stream.write",%s,%s%s]' % (_dump_str(m.stream_name), msg, tail)).encode()

    def _write_one(self, m: NewMessage, existing_ok: bool = False) -> WriteResult:
        what = f"stream.write {m.stream_name}"
        resp, maybe_applied = self._exchange(self._write_body(m), what)
        if resp.status_code == 200:
            v = self._value(resp, what)
            try:
                return WriteResult(int(v["position"]), int(v["globalPosition"]))
            except (TypeError, KeyError, ValueError):
                raise self._bad_shape(what, v) from None
        err = self._error(resp, what)
        if err.code == "STREAM_VERSION_CONFLICT":
            if (maybe_applied or existing_ok) and m.id:
                found = self._find_written(m)
                if found is not None:
                    return AlreadyWritten(*found) if existing_ok and not maybe_applied \
                        else found
            raise self._conflict(m, err) from None
        if _is_duplicate_id(resp) and m.id:
            if existing_ok and not maybe_applied:
                return AlreadyWritten(-1, -1)
            if maybe_applied:
                found = self._find_written(m)
                if found is not None:
                    self._say(f"{what}: an earlier attempt wrote message {m.id} at position "
                              f"{found.position}; not written again")
                    return found
            raise DuplicateMessageId(m.id) from None
        raise err

    def _find_written(self, m: NewMessage) -> WriteResult | None:
        """Position of message ``m.id`` in its stream, if an earlier attempt wrote it."""
        last = self.stream_last(m.stream_name)
        if last is not None and last.id == m.id:
            return WriteResult(last.position, last.global_position)
        start = 0 if m.expected_version is None else m.expected_version + 1
        for got in self.iter_stream(m.stream_name, start, batch_size=MAX_BATCH):
            if got.id == m.id:
                return WriteResult(got.position, got.global_position)
        return None

    def _conflict(self, m: NewMessage, err: EventoError) -> VersionConflict:
        d = err.details
        expected = d.get("expected", m.expected_version)
        actual = d.get("actual")
        if actual is None:
            mm = _CONFLICT_RE.search(err.message)
            if mm:
                expected, actual = int(mm.group(1)), int(mm.group(2))
            else:
                v = self.stream_version(m.stream_name)
                actual = -1 if v is None else v
        return VersionConflict(m.stream_name, int(expected if expected is not None else -1),
                               int(actual))

    # --- namespaces and the server ------------------------------------------------------------
    def ns_create(self, namespace: str, *, description: str | None = None,
                  token: str | None = None) -> dict:
        """Create a namespace; the answer holds its token (the only time it is shown).

        Without ``token`` the client picks one in the server's format, so a retried create
        whose first answer was lost is recognised (the namespace exists and our token opens it)
        instead of losing the token."""
        chosen = token or new_token(namespace)
        opts: dict[str, Any] = {}
        if description is not None:
            opts["description"] = description
        if chosen:
            opts["token"] = chosen
        args = [namespace, opts] if opts else [namespace]
        what = f"ns.create {namespace}"
        resp, maybe_applied = self._exchange(_dumps(["ns.create", *args]).encode(), what,
                                             idempotent=chosen is not None)
        if resp.status_code == 200:
            return self._value(resp, what)
        err = self._error(resp, what)
        if err.code == "NAMESPACE_EXISTS" and maybe_applied and chosen:
            probe = RemoteStore(self.url, chosen, timeout=self.timeout, retries=self.retries,
                                transport=self._transport)
            try:
                probe.stream_version("$eventodb-probe")
                info = self.ns_info(namespace)
                return {"createdAt": info.get("createdAt"), "namespace": namespace,
                        "token": chosen}
            except Unreachable:
                pass
            finally:
                self.requests += probe.requests
                probe.close()
        raise err

    def ns_delete(self, namespace: str) -> dict:
        return self._rpc("ns.delete", namespace, idempotent=False)

    def ns_list(self) -> list[dict]:
        rows = self._rpc("ns.list")
        if not isinstance(rows, list):
            raise self._bad_shape("ns.list", rows)
        return rows

    def ns_info(self, namespace: str | None = None) -> dict:
        info = self._rpc("ns.info", namespace or self.namespace)
        if not isinstance(info, dict):
            raise self._bad_shape("ns.info", info)
        return info

    def server_version(self) -> dict:
        v = self._get("/version")
        return v if isinstance(v, dict) else {"version": v}

    def server_health(self) -> dict:
        v = self._get("/health")
        return v if isinstance(v, dict) else {"status": v}
