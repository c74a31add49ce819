"""Issue 12 acceptance 5 (the part in the remote store): a server whose backend returns short
pages in the middle of a category (EventoDB's Pebble backend does) must not make a read stop
early: ``RemoteStore.category_pages`` ends only on an empty page or at ``until``."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from eventodb_cli.domain.message import NewMessage
from eventodb_cli.services import groups
from eventodb_cli.store.remote import RemoteStore


class ShortPages(httpx.BaseTransport):
    """A real transport whose ``category.get`` answers keep only the first third of each page
    (at least one message): short pages everywhere, not only at the end."""

    def __init__(self):
        self.inner = httpx.HTTPTransport()
        self.cut = 0

    def handle_request(self, request):
        resp = self.inner.handle_request(request)
        if not request.content.startswith(b'["category.get"'):
            return resp
        resp.read()
        rows = json.loads(resp.content) if resp.status_code == 200 else None
        if not isinstance(rows, list) or len(rows) < 2:
            return resp
        self.cut += 1
        body = json.dumps(rows[:max(1, len(rows) // 3)]).encode()
        return httpx.Response(200, headers={"content-type": "application/json"}, content=body)


@pytest.fixture
def filled(server):
    with RemoteStore(server.url, server.token) as admin:
        token = admin.ns_create("short-" + uuid.uuid4().hex[:10])["token"]
    with RemoteStore(server.url, token) as s:
        names = [f"shortcat-{uuid.UUID(int=i + 1)}" for i in range(60)]
        s.write_batch([NewMessage(names[i % 60], "T", '{"i":%d}' % i) for i in range(1500)])
    return server.url, token


def test_short_pages_mid_category_do_not_end_a_read(filled):
    url, token = filled
    t = ShortPages()
    with RemoteStore(url, token, transport=t) as s:
        msgs = list(s.iter_category("shortcat", batch_size=500))
        assert sorted(json.loads(m.data)["i"] for m in msgs) == list(range(1500))
        gpos = [m.global_position for m in msgs]
        assert gpos == sorted(set(gpos)) and t.cut > 3  # in order, nothing twice
        head = s.category_head("shortcat")
        pages = list(s.category_pages("shortcat", 1, 500, until=head))
        assert sum(len(b) for b, _ in pages) == 1500 and pages[-1][1] == head


def test_verify_groups_is_ok_on_a_server_with_short_pages(filled):
    url, token = filled
    t = ShortPages()
    with RemoteStore(url, token, transport=t) as s:
        report = groups.verify(s, "shortcat", 4)
    assert report["ok"] is True, report.get("violations", [])[:3]
    assert sum(m["messages"] for m in report["members"]) == 1500
    assert t.cut > 0


def test_verify_groups_on_a_server_needs_no_head_probes(filled):
    """The member reads stop where the unfiltered read ended: no search for the head (it took
    ~2 log2(head) one-message reads): one page + the empty page that confirms the end, then per
    member one page and (a short page ending before the head) one read that confirms it."""
    url, token = filled
    with RemoteStore(url, token) as s:
        report = groups.verify(s, "shortcat", 4)
        assert report["ok"] is True
        assert s.requests <= 2 + 2 * 4, s.requests  # was 2 log2(1500) + 2 + 4 = 27
