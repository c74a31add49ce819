"""Message DB on PostgreSQL as a store (``--url postgresql://...``), through psycopg 3.

Everything a Message DB client does goes through Message DB's own server functions, as Eventide
and message-db-py do: ``write_message`` (expected version, client ids), ``get_stream_messages``,
``get_category_messages`` (position, batch size, correlation, consumer group member and size),
``get_last_stream_message``, ``stream_version``, ``message_store_version``. The functions call
each other unqualified, so every session runs with ``search_path=message_store,public``; any role
with the privileges Message DB grants its ``message_store`` role can be used.

Plain SQL on ``message_store.messages`` is used only where Message DB has no function for the job
(docs/messagedb.md lists each): reads of every category (``category get ''``, export of the whole
database), a stream read from a global position or of a name without ``-`` (Message DB's
``get_stream_messages`` refuses those), listings and counts, the fast counts for lag/verify-groups
(computed with Message DB's own ``hash_64(cardinal_id(...))``, so the member is Message DB's by
construction), and ``import`` (a direct INSERT: ``write_message`` cannot keep a global position).

The password (from the URL, ``--token``/``--token-file``, the profile, or libpq's PGPASSWORD and
``~/.pgpass``) never appears in output: ``url`` and every error message show ``***`` instead.
psycopg is imported only here, so local-store startup does not pay for it.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timedelta
from typing import Sequence

import psycopg
from psycopg import errors as pgerr

from ..domain.message import Message, NewMessage, WriteResult, canonical_json
from ..errors import (DiskFull, DuplicateMessageId, NotFound, StoreError, Unreachable,
                      UsageError, VersionConflict)
from .base import Store

# psycopg logs "error ignored terminating <Pipeline>" when a batch fails inside executemany's
# pipeline; the error itself is raised and reported in one line, so keep the log off stderr
logging.getLogger("psycopg").addHandler(logging.NullHandler())
logging.getLogger("psycopg").propagate = False

SEARCH_PATH = "-c search_path=message_store,public"
SEQUENCE = "message_store.messages_global_position_seq"
# Message DB's get_category_messages casts the group size to smallint
MAX_FUNCTION_GROUP_SIZE = 32767
_EPOCH = datetime(1970, 1, 1)

# the columns of Message DB's ``message`` type, time as integer microseconds (UTC)
_COLS = ("id, stream_name, type, position, global_position, data, metadata, "
         "(extract(epoch FROM time) * 1000000)::bigint")
_TABLE_COLS = ("id::varchar, stream_name, type, position, global_position, data::varchar, "
               "metadata::varchar, (extract(epoch FROM time) * 1000000)::bigint")
_WRITE = ("SELECT p, currval('" + SEQUENCE + "') FROM write_message(%s::varchar, %s::varchar, "
          "%s::varchar, %s::jsonb, %s::jsonb, %s::bigint) AS p")
_MEMBER = "MOD(@hash_64(cardinal_id(stream_name)), %s) = %s"
_WRONG_VERSION = re.compile(
    r"Wrong expected version: (-?\d+) \(Stream: (.*), Stream Version: (-?\d+)\)", re.S)
_USAGE_RAISES = ("Consumer group", "Must be a category", "Must be a stream name",
                 "Correlation must be a category", "Retrieval with SQL condition")


def mask_url(url: str) -> str:
    """The URL with its password (``user:PASSWORD@`` or ``?password=``) replaced by ``***``."""
    out = re.sub(r"^([a-zA-Z]+://[^/@:?#]*:)[^@/?#]*@", r"\1***@", url)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", out, flags=re.I)


def _password_from(target) -> str | None:
    """``--token`` > ``--token-file`` > the profile's token/token_file; else libpq decides
    (the URL's own password, PGPASSWORD, PGPASSFILE / ~/.pgpass)."""
    from .resolve import _read_token_file

    if target.token:
        return target.token
    if target.token_file:
        return _read_token_file(target.token_file)
    if target.profile:
        from . import profiles as P

        prof = P.get_profile(target.profile)
        if prof.get("token"):
            return prof["token"]
        if prof.get("token_file"):
            return _read_token_file(prof["token_file"])
    return None


def _timeout_from(target) -> float:
    if target.timeout:
        return float(target.timeout)
    from .resolve import DEFAULT_TIMEOUT, _env_float

    return _env_float("EVENTODB_TIMEOUT") or DEFAULT_TIMEOUT


def open_postgres(target) -> "PostgresStore":
    """Open the Message DB database a resolved ``Target`` names (store/resolve.py)."""
    return PostgresStore(target.url, password=_password_from(target),
                         timeout=_timeout_from(target), verbose=target.verbose)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _message(row) -> Message:
    """A row of Message DB's ``message`` type (time as integer microseconds) as our Message:
    jsonb's text (``{"a": 1}``, keys by length) becomes canonical JSON, time nanoseconds."""
    mid, stream, mtype, pos, gpos, data, meta, us = row
    return Message(str(mid), stream, mtype, pos, gpos,
                   "null" if data is None else canonical_json(json.loads(data)),
                   None if meta is None else canonical_json(json.loads(meta)), us * 1000)


def _pg_uuid(mid: str) -> str:
    """Our ids follow Go's uuid.Parse; PostgreSQL's uuid input has no ``urn:uuid:`` form."""
    return mid[9:] if mid[:9].lower() == "urn:uuid:" else mid


class PostgresStore(Store):
    kind = "postgres"

    def __init__(self, url: str, *, password: str | None = None, timeout: float = 30.0,
                 verbose: bool = False):
        self.url = mask_url(url)  # what describe_source and messages show
        self._secrets = [s for s in (password, _url_password(url)) if s]
        self.timeout = timeout
        self.verbose = verbose
        kwargs = {"autocommit": True, "connect_timeout": max(1, int(round(timeout))),
                  "application_name": "eventodb"}
        try:
            info = psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError as e:
            raise UsageError(f"not a usable PostgreSQL URL {self.url}: "
                             f"{self._reason(e)}") from None
        opts = info.get("options")
        kwargs["options"] = f"{opts} {SEARCH_PATH}" if opts else SEARCH_PATH
        if password:
            kwargs["password"] = password
        self._connect_args = (url, kwargs)
        self._pg = self._connect()

    def _connect(self):
        url, kwargs = self._connect_args
        try:
            return psycopg.connect(url, **kwargs)
        except psycopg.Error as e:  # no server, refused, authentication, TLS
            reason = self._reason(e)
            if re.match(r"(connection is bad: )?invalid ", reason):  # a bad port, sslmode...
                raise UsageError(f"not a usable PostgreSQL URL {self.url}: {reason}") from None
            raise Unreachable(f"cannot connect to Message DB at {self.url}: {reason}") from None

    def __repr__(self) -> str:
        return f"PostgresStore({self.url!r})"

    def close(self) -> None:
        if getattr(self, "_pg", None) is not None:
            self._pg.close()

    # --- errors -------------------------------------------------------------------------------
    def _redact(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return mask_url(text)

    def _reason(self, e: Exception) -> str:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        text = lines[0] if lines else type(e).__name__
        # libpq: 'connection failed: connection to server at "h", port p failed: FATAL: ...'
        m = re.search(r"(FATAL|ERROR):\s*(.*)$", text)
        if m:
            text = m.group(2)
        elif ": " in text and text.startswith("connection failed"):
            text = text.split(": ", 1)[1]
        return self._redact(_one_line(text))

    def _error(self, e: Exception, what: str) -> Exception:
        """A psycopg error as one of ours (errors.py), message on one line, no password."""
        if isinstance(e, pgerr.RaiseException):
            msg = _one_line(e.diag.message_primary or str(e))
            m = _WRONG_VERSION.search(msg)
            if m:
                return VersionConflict(m.group(2), int(m.group(1)), int(m.group(3)))
            if msg.startswith(_USAGE_RAISES):
                return UsageError(self._redact(msg))
            return StoreError(f"{what}: {self._redact(msg)}")
        if isinstance(e, pgerr.UniqueViolation):
            detail = e.diag.message_detail or ""
            m = re.search(r"Key \(id\)=\(([^)]*)\)", detail)
            if m:
                return DuplicateMessageId(m.group(1))
            return StoreError(f"{what}: {self._redact(_one_line(detail or str(e)))}")
        if isinstance(e, (pgerr.UndefinedFunction, pgerr.InvalidSchemaName,
                          pgerr.UndefinedTable)):
            return StoreError(f"{what}: Message DB is not installed in {self.url} (or this "
                              f"role cannot see schema message_store): {self._reason(e)}")
        if isinstance(e, pgerr.InsufficientPrivilege):
            return StoreError(f"{what}: permission denied for this role on {self.url}: "
                              f"{self._reason(e)}")
        if isinstance(e, pgerr.DiskFull):
            return DiskFull(f"{what}: disk full on {self.url}")
        if isinstance(e, pgerr.UntranslatableCharacter):
            return UsageError(f"{what}: {self._reason(e)} (Message DB keeps data and metadata "
                              "as jsonb, which cannot hold \\u0000)")
        if isinstance(e, (pgerr.InvalidTextRepresentation, pgerr.NumericValueOutOfRange,
                          pgerr.CharacterNotInRepertoire)):
            return UsageError(f"{what}: {self._reason(e)}")
        if isinstance(e, (psycopg.OperationalError, psycopg.InterfaceError)):
            return Unreachable(f"{what}: lost the connection to {self.url}: {self._reason(e)}")
        return StoreError(f"{what}: {self._reason(e)}")

    def _say(self, sql: str, started: float, rows: int) -> None:
        """``--verbose``: each statement (no parameters: they carry data) and its time."""
        import sys
        import time

        try:
            sys.stderr.write(self._redact(
                f"eventodb: sql {(time.perf_counter() - started) * 1e3:.1f} ms, {rows} row(s): "
                f"{_one_line(sql)}") + "\n")
        except (OSError, ValueError):
            pass

    @property
    def _db(self):
        """The connection, opened again when the last one broke (a restarted server, a
        terminated backend): a consumer that waits out an outage continues on a new one."""
        if self._pg.closed or self._pg.broken:
            self._pg.close()
            self._pg = self._connect()
        return self._pg

    def _query(self, sql: str, params: tuple, what: str) -> list[tuple]:
        import time

        started = time.perf_counter()
        for attempt in (1, 2):
            try:
                with self._db.cursor() as cur:
                    cur.execute(sql, params)
                    rows = cur.fetchall()
                break
            except psycopg.Error as e:
                # a read on a connection found broken is tried once more on a new one
                if attempt == 1 and self._pg.broken:
                    continue
                raise self._error(e, what) from None
        if self.verbose:
            self._say(sql, started, len(rows))
        return rows

    def _messages(self, sql: str, params: tuple, what: str) -> list[Message]:
        return [_message(r) for r in self._query(sql, params, what)]

    def _scalar(self, sql: str, params: tuple, what: str):
        rows = self._query(sql, params, what)
        return rows[0][0] if rows else None

    # --- writes -------------------------------------------------------------------------------
    def write_batch(self, msgs: Sequence[NewMessage], *,
                    existing_ok: bool = False) -> list[WriteResult]:
        """``write_message`` for each, in ONE transaction: all of them, or (any error) none.

        ``existing_ok`` (a resumed ``write --file``, as on a server): a message whose id is
        already stored is not written again; its result is an ``AlreadyWritten``."""
        if not msgs:
            return []
        from .local import new_ids

        ids = iter(new_ids(sum(1 for m in msgs if not m.id)))
        params = [(_pg_uuid(m.id) if m.id else next(ids), m.stream_name, m.type, m.data,
                   m.metadata, m.expected_version) for m in msgs]
        results: list[WriteResult | None] = [None] * len(msgs)
        try:
            db = self._db
            with db.transaction(), db.cursor() as cur:
                todo = list(range(len(msgs)))
                if existing_ok:
                    todo = self._skip_written(cur, msgs, params, results)
                if len(todo) == 1:
                    cur.execute(_WRITE, params[todo[0]])
                elif todo:
                    cur.executemany(_WRITE, [params[i] for i in todo], returning=True)
                for i in todo:
                    pos, gpos = cur.fetchone()
                    results[i] = WriteResult(pos, gpos)
                    cur.nextset()
        except psycopg.Error as e:
            raise self._error(e, "write failed") from None
        return results

    def _skip_written(self, cur, msgs, params, results) -> list[int]:
        """Fill ``results`` with ``AlreadyWritten`` for the stored ids; the indices to write."""
        import uuid as _uuid

        from ..domain.message import AlreadyWritten

        given = [m.id for m in msgs if m.id]
        if not given:
            return list(range(len(msgs)))
        cur.execute("SELECT id::varchar, position, global_position FROM messages "
                    "WHERE id = ANY(%s::uuid[])", ([_pg_uuid(x) for x in given],))
        found = {r[0]: (r[1], r[2]) for r in cur.fetchall()}
        todo = []
        for i, m in enumerate(msgs):
            hit = found.get(str(_uuid.UUID(_pg_uuid(m.id)))) if m.id else None
            if hit is None:
                todo.append(i)
            else:
                results[i] = AlreadyWritten(*hit)
        return todo

    # --- reads --------------------------------------------------------------------------------
    def stream_get(self, stream, position=0, global_position=None, batch_size=1000):
        limit = -1 if batch_size is None or batch_size <= 0 else batch_size
        if global_position is None and "-" in stream:
            return self._messages(
                f"SELECT {_COLS} FROM get_stream_messages(%s::varchar, %s::bigint, %s::bigint)",
                (stream, position, limit), "stream read failed")
        # no function for these: a name without '-' (get_stream_messages refuses it) or a read
        # from a global position (EventoDB's stream.get option)
        sql = f"SELECT {_TABLE_COLS} FROM messages WHERE stream_name = %s"
        params: list = [stream]
        if global_position is not None:
            sql += " AND global_position >= %s"
            params.append(global_position)
        else:
            sql += " AND position >= %s"
            params.append(position)
        sql += " ORDER BY position"
        if limit > 0:
            sql += " LIMIT %s"
            params.append(limit)
        return self._messages(sql, tuple(params), "stream read failed")

    def stream_last(self, stream, type=None):
        if type:
            try:
                rows = self._messages(
                    f"SELECT {_COLS} FROM get_last_stream_message(%s::varchar, %s::varchar)",
                    (stream, type), "stream read failed")
            except StoreError:
                if self._has_typed_last():
                    raise
                # Message DB before 1.3.0: get_last_stream_message(stream_name) only
                rows = self._messages(
                    f"SELECT {_TABLE_COLS} FROM messages WHERE stream_name = %s AND type = %s "
                    "ORDER BY position DESC LIMIT 1", (stream, type), "stream read failed")
        else:
            rows = self._messages(f"SELECT {_COLS} FROM get_last_stream_message(%s::varchar)",
                                  (stream,), "stream read failed")
        return rows[0] if rows else None

    def _has_typed_last(self) -> bool:
        return bool(self._scalar(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'message_store' AND p.proname = 'get_last_stream_message' "
            "AND p.pronargs = 2", (), "catalog read failed"))

    def stream_version(self, stream):
        return self._scalar("SELECT stream_version(%s::varchar)", (stream,),
                            "stream version failed")

    def category_get(self, category, position=1, batch_size=1000, correlation=None,
                     member=None, size=None):
        limit = -1 if batch_size is None or batch_size <= 0 else batch_size
        if (member is None) != (size is None):
            raise UsageError("consumer group member and size must be given together")
        if category == "" or "-" in category or (correlation and "-" in correlation):
            # every category (no function reads them all), or a name that cannot match
            return self._category_sql(category, position, limit, correlation, member, size)
        if size is not None and not 0 <= member < size:
            raise UsageError(f"consumer group member must be >= 0 and < size "
                             f"(member {member}, size {size})")
        if size is not None and size > MAX_FUNCTION_GROUP_SIZE:
            return self._category_sql(category, position, limit, correlation, member, size)
        return self._messages(
            f"SELECT {_COLS} FROM get_category_messages(%s::varchar, %s::bigint, %s::bigint, "
            "%s::varchar, %s::bigint, %s::bigint)",
            (category, position, limit, correlation or None, member, size),
            "category read failed")

    def _category_sql(self, category, position, limit, correlation, member, size):
        """The same filter as get_category_messages, in plain SQL on the table."""
        where = ["global_position >= %s"]
        params: list = [position]
        if category != "":
            where.insert(0, "category(stream_name) = %s")
            params.insert(0, category)
        if correlation:
            where.append("category(metadata->>'correlationStreamName') = %s")
            params.append(correlation)
        if size is not None:
            where.append(_MEMBER)
            params += [size, member]
        sql = f"SELECT {_TABLE_COLS} FROM messages WHERE {' AND '.join(where)} " \
              "ORDER BY global_position"
        if limit > 0:
            sql += " LIMIT %s"
            params.append(limit)
        return self._messages(sql, tuple(params), "category read failed")

    def category_head(self, category):
        """One indexed ``max``: Message DB's category index is on category(stream_name)."""
        if category == "":
            return self._scalar("SELECT max(global_position) FROM messages", (),
                                "category head failed")
        return self._scalar("SELECT max(global_position) FROM messages "
                            "WHERE category(stream_name) = %s", (category,),
                            "category head failed")

    # --- one-statement answers for lag and verify-groups (optional Store methods) -------------
    # The member is Message DB's own MOD(@hash_64(cardinal_id(stream_name)), size), as in
    # get_category_messages, but computed once per stream (after a GROUP BY) instead of once per
    # message: the hash functions are PL/pgSQL, ~20 us a call.
    def _per_stream(self, category, after, head):
        where = ["global_position > %s", "global_position <= %s"]
        params: list = [after, head]
        if category != "":
            where.insert(0, "category(stream_name) = %s")
            params.insert(0, category)
        return (f"SELECT stream_name, count(*) AS n, min(global_position) AS g FROM messages "
                f"WHERE {' AND '.join(where)} GROUP BY stream_name OFFSET 0"), params
        # OFFSET 0: a fence, or the planner pushes the member filter below the GROUP BY and
        # hashes every message again

    def share_lag(self, category, member, size, after, head):
        """``(count, oldest_time_ns)`` of the share's messages with ``after < gpos <= head``
        (services/group_view.py), in one statement; the oldest is the share's first message
        by global position, as the generic path reads it."""
        if head is None or after >= head:
            return 0, None
        inner, params = self._per_stream(category, after, head)
        where = ""
        if size is not None:
            where = f"WHERE {_MEMBER}"
            params += [size, member]
        n, us = self._query(
            f"WITH s AS (SELECT sum(n) AS n, min(g) AS g FROM ({inner}) AS t {where}) "
            "SELECT coalesce(s.n, 0)::bigint, (SELECT (extract(epoch FROM time) * 1000000)"
            "::bigint FROM messages WHERE global_position = s.g) FROM s",
            tuple(params), "lag count failed")[0]
        return n, None if us is None else us * 1000

    def stream_counts(self, category, head, member=None, size=None):
        """Messages per stream of the category (or a member's share) with gpos <= ``head``:
        what one of verify-groups' reads adds up (services/groups.py ``_read_counts``)."""
        if head is None:
            return {}
        inner, params = self._per_stream(category, 0, head)
        sql = f"SELECT stream_name, n FROM ({inner}) AS t"
        if size is not None:
            sql += f" WHERE {_MEMBER}"
            params += [size, member]
        return dict(self._query(sql, tuple(params), "count failed"))

    def stream_members(self, category, head, size):
        """Every stream of the category with gpos <= ``head``: ``{stream: (messages, member)}``,
        member ``None`` for a stream without an id - verify-groups' every count in ONE
        statement (one scan, one hash per stream)."""
        if head is None:
            return {}
        inner, params = self._per_stream(category, 0, head)
        rows = self._query(
            f"SELECT stream_name, n, MOD(@hash_64(cardinal_id(stream_name)), %s) "
            f"FROM ({inner}) AS t", (size, *params), "count failed")
        return {s: (n, m) for s, n, m in rows}

    # --- listings (ns.streams / ns.categories / counts) ---------------------------------------
    def list_streams(self, prefix: str = "", cursor: str = "", limit: int = 100) -> list[dict]:
        """Streams sorted by name (byte order) after ``cursor``, names starting with ``prefix``.
        Rows: stream, version, lastActivity."""
        from ..domain.message import format_time

        sql = ("SELECT stream_name, max(position), "
               "(extract(epoch FROM max(time)) * 1000000)::bigint FROM messages "
               "WHERE stream_name COLLATE \"C\" > %s")
        params: list = [cursor]
        if prefix:
            sql += " AND left(stream_name, %s) = %s"
            params += [len(prefix), prefix]
        sql += " GROUP BY stream_name ORDER BY stream_name COLLATE \"C\" LIMIT %s"
        params.append(limit)
        return [{"lastActivity": format_time(us * 1000), "stream": s, "version": v}
                for s, v, us in self._query(sql, tuple(params), "stream listing failed")]

    def list_categories(self) -> list[dict]:
        """Rows: category, messageCount, streamCount; sorted by category (byte order)."""
        rows = self._query(
            "SELECT c, n, s FROM (SELECT category(stream_name) AS c, sum(n)::bigint AS n, "
            "count(*) AS s FROM (SELECT stream_name, count(*) AS n FROM messages "
            "GROUP BY stream_name) AS ps GROUP BY 1) AS t ORDER BY c COLLATE \"C\"", (),
            "category listing failed")  # category() once per stream, not once per message
        return [{"category": c, "messageCount": n, "streamCount": s} for c, n, s in rows]

    def message_count(self) -> int:
        return self._scalar("SELECT count(*) FROM messages", (), "count failed")

    # --- server version / health (cli/server.py) ----------------------------------------------
    def server_version(self) -> dict:
        v = self._scalar("SELECT message_store_version()", (), "version failed")
        pg = self._pg.info.server_version
        return {"version": v, "server": "messagedb",
                "postgres": f"{pg // 10000}.{pg % 10000}"}

    def server_health(self) -> dict:
        try:
            v = self._scalar("SELECT message_store_version()", (), "health check failed")
        except StoreError as e:
            return {"status": "error", "error": e.message}
        return {"status": "ok", "messageStoreVersion": v}

    def ns_info(self, namespace: str | None = None) -> dict:
        if namespace:
            raise UsageError("Message DB has no namespaces (one database is one store)")
        return {"namespace": None, "messageCount": self.message_count(),
                "url": self.url, "kind": self.kind}

    def _no_namespaces(self, *_a, **_k):
        raise UsageError("Message DB has no namespaces (one database is one store)")

    ns_create = ns_delete = ns_list = _no_namespaces

    # --- import keeping positions (eventodb import) -------------------------------------------
    def import_records(self, records, *, force: bool = False, batch_size: int = 1000,
                       on_batch=None, atomic: bool = False) -> int:
        """Insert ``Message`` records as given (ids, positions, global positions kept; times to
        the microsecond, Message DB's precision), ``batch_size`` per COPY into
        message_store.messages: ``write_message`` always takes the next global position, so it
        cannot keep the exported ones. The global position sequence is moved past the highest
        imported position, so later ``write_message`` calls continue after it. ``force`` first
        deletes every message. Each batch is a transaction (earlier batches stay, as the
        server's /import does), or with ``atomic`` the whole import, the delete included, is
        one: any error (a bad record raised by ``records``, a clash, Ctrl-C) leaves the database
        as it was (the local store's contract, store/local.py)."""
        from contextlib import nullcontext

        total = 0
        batch: list[Message] = []

        def flush() -> int:
            nonlocal total
            try:
                with (nullcontext() if atomic else db.transaction()), db.cursor() as cur:
                    with cur.copy("COPY messages (global_position, position, time, stream_name, "
                                  "type, data, metadata, id) FROM STDIN") as cp:
                        for m in batch:
                            cp.write_row((m.global_position, m.position,
                                          _EPOCH + timedelta(microseconds=m.time // 1000),
                                          m.stream_name, m.type, m.data, m.metadata,
                                          _pg_uuid(m.id)))
                    cur.execute(f"SELECT setval('{SEQUENCE}', %s) WHERE %s > "
                                f"(SELECT CASE WHEN is_called THEN last_value ELSE 0 END "
                                f"FROM {SEQUENCE})",
                                (max(m.global_position for m in batch),) * 2)
            except pgerr.UniqueViolation as e:
                raise StoreError("import clashes with stored messages: "
                                 f"{self._redact(_one_line(e.diag.message_detail or str(e)))}"
                                 ) from None
            except psycopg.Error as e:
                raise self._error(e, "import failed") from None
            total += len(batch)
            last = batch[-1].global_position
            batch.clear()
            return last

        try:
            db = self._db
            with (db.transaction() if atomic else nullcontext()):
                if force:
                    self._query_none("DELETE FROM messages", "import --force failed")
                for m in records:
                    batch.append(m)
                    if len(batch) >= batch_size:
                        last = flush()
                        if on_batch:
                            on_batch(total, last)
                if batch:
                    flush()
        except psycopg.Error as e:  # the COMMIT itself
            raise self._error(e, "import failed") from None
        return total

    def _query_none(self, sql: str, what: str) -> None:
        try:
            with self._db.cursor() as cur:
                cur.execute(sql)
        except psycopg.Error as e:
            raise self._error(e, what) from None


def _url_password(url: str) -> str | None:
    try:
        return psycopg.conninfo.conninfo_to_dict(url).get("password") or None
    except psycopg.Error:
        m = re.match(r"^[a-zA-Z]+://[^/@:?#]*:([^@/?#]*)@", url)
        return m.group(1) if m else None
