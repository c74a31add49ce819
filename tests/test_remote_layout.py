"""The remote store stays split by responsibility (STYLE: modules under ~600 lines): the HTTP
layer, reads, server-sent streams and writes/namespaces each in their own module, the old
import path still whole, and httpx imported in one module only."""

from __future__ import annotations

import pathlib
import re

import eventodb_cli.store as store_pkg

STORE = pathlib.Path(store_pkg.__file__).parent


def test_remote_modules_are_under_600_lines():
    mods = sorted(STORE.glob("remote*.py"))
    assert {m.name for m in mods} >= {"remote.py", "remote_http.py", "remote_reads.py",
                                      "remote_events.py"}
    for m in mods:
        n = len(m.read_text().splitlines())
        assert n <= 600, (m.name, n)


def test_the_old_import_path_keeps_working():
    from eventodb_cli.store import remote

    for name in ("RemoteStore", "namespace_of_token", "new_token", "MAX_BATCH", "httpx"):
        assert hasattr(remote, name), name
    s = remote.RemoteStore("http://127.0.0.1:9", "t")
    for method in ("category_pages", "category_get", "stream_get", "pokes", "import_stream",
                   "write_batch", "ns_create", "server_health", "rpc"):
        assert callable(getattr(s, method)), method
    assert repr(s) == "RemoteStore('http://127.0.0.1:9')"


def test_only_the_http_layer_imports_httpx():
    importers = [p.name for p in STORE.glob("*.py")
                 if re.search(r"^\s*import httpx\b|^\s*from httpx\b", p.read_text(), re.M)
                 or re.search(r"import httpx as", p.read_text())]
    assert importers == ["remote_http.py"], importers
