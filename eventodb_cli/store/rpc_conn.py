"""Keep-alive ``POST /rpc`` over the standard library's ``http.client``, for plain ``http://``.

Why not httpx for these requests: measured on the 2-core bench machine (2026-12-03), one
``POST /rpc`` costs the client about 1.0 ms of CPU through ``httpx.Client`` (0.7 ms through its
transport alone: httpcore, h11) against 0.3 ms through ``http.client``. A bulk ``write --file``
sends one request per message, so the client, not the server, was the limit (~820 msg/s where 8
``http.client`` threads get 2,300-4,600). Everything else (TLS, proxies, SSE, ``/import``,
injected test transports) stays on httpx; ``RemoteStore.rpc_conn`` decides.

Failures are raised as ``Failure`` naming the httpx exception type they stand for
(``httpx_type``); ``RemoteStore._attempt`` turns them into that type, so the retry rules (a
connect failure was not sent; anything later may have been applied) are the same for both paths,
and a command that only sends RPCs never imports httpx.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from typing import Any


class Failure(Exception):
    """A transport failure; ``httpx_type``: the name of the httpx exception it stands for."""

    def __init__(self, httpx_type: str, text: str):
        super().__init__(text)
        self.httpx_type = httpx_type


class Reply:
    """The part of ``httpx.Response`` the RPC code reads."""

    __slots__ = ("status_code", "content", "headers")

    def __init__(self, status_code: int, content: bytes, headers: dict[str, str]):
        self.status_code = status_code
        self.content = content
        self.headers = headers

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class RpcConnections:
    """A pool of keep-alive connections to one host; ``post(body)`` sends one ``POST /rpc``."""

    def __init__(self, host: str, port: int, path: str, headers: dict[str, str],
                 timeout: float):
        self.host = host
        self.port = port
        self.path = path
        self.headers = dict(headers)
        self.timeout = timeout
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def post(self, body: bytes) -> Reply:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                conn.connect()
            except socket.timeout as e:
                raise Failure("ConnectTimeout", f"timed out ({e})") from None
            except OSError as e:
                raise Failure("ConnectError", f"[Errno {e.errno}] {e.strerror or e}"
                              if e.errno else str(e)) from None
        try:
            conn.request("POST", self.path, body, self.headers)
            r = conn.getresponse()
            data = r.read()
            reply = Reply(r.status, data, {k.lower(): v for k, v in r.getheaders()})
            reusable = not r.will_close
        except socket.timeout:
            conn.close()
            raise Failure("ReadTimeout", "timed out") from None
        except (http.client.HTTPException, OSError) as e:  # reset, server gone, bad answer
            conn.close()
            if isinstance(e, http.client.RemoteDisconnected):
                raise Failure("RemoteProtocolError",
                              "Server disconnected without sending a response.") from None
            if isinstance(e, http.client.HTTPException):
                raise Failure("RemoteProtocolError", str(e) or type(e).__name__) from None
            raise Failure("ReadError", str(e) or type(e).__name__) from None
        except BaseException:  # Ctrl-C mid-request: the connection's state is unknown
            conn.close()
            raise
        if reusable:
            with self._lock:
                self._idle.append(conn)
        else:
            conn.close()
        return reply

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
