"""services/positions.py: names, the one conversion, Recorded reads/writes, size checks and
discovery, on a real local store and a real ``eventodb serve``."""

from __future__ import annotations

import json
import secrets

import pytest

from eventodb_cli.domain.message import NewMessage
from eventodb_cli.errors import StoreError, UsageError
from eventodb_cli.services import positions as P
from eventodb_cli.store.local import LocalStore


def _cat(prefix="acct"):
    return f"{prefix}{secrets.token_hex(4)}"


@pytest.fixture
def local(store_path):
    with LocalStore(store_path, create=True) as s:
        yield s


@pytest.fixture
def remote(server):
    from eventodb_cli.store.remote import RemoteStore

    st = RemoteStore(server.url, server.token)
    yield st
    st.close()


@pytest.fixture(params=["local", "remote"])
def store(request):
    return request.getfixturevalue(request.param)


# --- names --------------------------------------------------------------------------------------
@pytest.mark.parametrize("category,identifier,stream", [
    ("account", "billing-0", "account:position-billing-0"),
    ("account:command", "billing-0", "account:command+position-billing-0"),
    ("account:command+x", "c", "account:command+x+position-c"),
    ("account", "someConsumer", "account:position-someConsumer"),
    ("account", None, "account:position"),
    ("account:position", "c", "account:position-c"),  # Eventide adds the type only once
])
def test_position_stream_name_follows_eventide(category, identifier, stream):
    assert P.position_stream_name(category, identifier) == stream


@pytest.mark.parametrize("stream,parsed", [
    ("account:position-billing-0", ("account", "billing-0")),
    ("account:command+position-billing-0", ("account:command", "billing-0")),
    ("account:position", ("account", None)),
    ("account-1", None),
    ("account:command-1", None),
    ("account:positions-1", None),
])
def test_parse_position_stream(stream, parsed):
    assert P.parse_position_stream(stream) == parsed


def test_group_identifier_and_split():
    assert P.group_identifier("g", 0) == "g-0"
    assert P.group_identifier("billing-eu", 12) == "billing-eu-12"
    assert P.split_group_identifier("billing-eu-12") == ("billing-eu", 12)
    assert P.split_group_identifier("someConsumer") is None
    assert P.split_group_identifier("x-") is None
    with pytest.raises(UsageError):
        P.group_identifier("", 0)
    with pytest.raises(UsageError):
        P.group_identifier("g", -1)


def test_category_with_a_dash_is_refused():
    with pytest.raises(UsageError):
        P.position_stream_name("account-1", "g-0")


# --- the one conversion -------------------------------------------------------------------------
def test_conversion_is_off_by_exactly_one_and_inverse():
    assert P.next_from_recorded(0) == 1
    assert P.recorded_from_next(1) == 0
    for p in (0, 1, 41, 2**62):
        assert P.recorded_from_next(P.next_from_recorded(p)) == p
    assert P.Position(41).next == 42


# --- read / write -------------------------------------------------------------------------------
def test_read_missing_is_none(store):
    assert P.read_position(store, _cat(), "g-0") is None


def test_write_then_read_keeps_last_and_history(store):
    cat = _cat()
    P.write_position(store, cat, "g-1", 5, group="g", member=1, size=3)
    w = P.write_position(store, cat, "g-1", 9, group="g", member=1, size=3)
    pos = P.read_position(store, cat, "g-1")
    assert (pos.position, pos.group, pos.member, pos.size) == (9, "g", 1, 3)
    assert pos.stream == f"{cat}:position-g-1" == w.stream
    assert pos.global_position == w.global_position
    assert pos.time_ns and pos.next == 10
    msgs = store.stream_get(f"{cat}:position-g-1")
    assert [m.type for m in msgs] == ["Recorded", "Recorded"]
    assert [json.loads(m.data) for m in msgs] == [{"position": 5}, {"position": 9}]
    assert json.loads(msgs[-1].metadata) == {"group": "g", "member": 1, "size": 3}


def test_eventide_written_position_without_metadata_is_read(store):
    cat = _cat()
    store.write(NewMessage(f"{cat}:position-worker", "Recorded", '{"position":17}'))
    pos = P.read_position(store, cat, "worker")
    assert (pos.position, pos.group, pos.member, pos.size, pos.next) == (17, None, None, None, 18)


def test_other_message_types_in_the_stream_are_ignored(store):
    cat = _cat()
    P.write_position(store, cat, "w", 3)
    store.write(NewMessage(f"{cat}:position-w", "SomethingElse", '{"position":99}'))
    assert P.read_position(store, cat, "w").position == 3


def test_bad_recorded_data_is_a_store_error(local):
    cat = _cat()
    local.write(NewMessage(f"{cat}:position-w", "Recorded", '{"position":"x"}'))
    with pytest.raises(StoreError, match="no valid 'position'"):
        P.read_position(local, cat, "w")


def test_write_refuses_negative_or_non_int(local):
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(UsageError):
            P.write_position(local, "acct", "w", bad)


# --- size ---------------------------------------------------------------------------------------
def test_check_size():
    P.check_size(None, 4)
    P.check_size(P.Position(3), 4)  # Eventide's: no size recorded
    P.check_size(P.Position(3, "billing", 0, 4, stream="account:position-billing-0"), 4)
    with pytest.raises(P.SizeMismatch) as e:
        P.check_size(P.Position(3, "billing", 0, 3, stream="account:position-billing-0"), 4)
    msg = e.value.message
    assert "eventodb simulate-scale account --from 3 --to 4 --group billing --execute" in msg
    assert "--force-size" in msg
    assert e.value.exit_code == 2


# --- discovery ----------------------------------------------------------------------------------
def test_list_position_streams(store):
    cat = _cat()
    P.write_position(store, cat, "g-0", 1, group="g", member=0, size=2)
    P.write_position(store, cat, "g-1", 1, group="g", member=1, size=2)
    P.write_position(store, f"{cat}:command", "h-0", 1, group="h", member=0, size=1)
    store.write(NewMessage(f"{cat}:position", "Recorded", '{"position":1}'))
    store.write(NewMessage(f"{cat}-1", "Opened", "{}"))
    store.write(NewMessage(f"{cat}:positionx-1", "Opened", "{}"))
    found = sorted((c, i or "", s) for c, i, s in P.list_position_streams(store)
                   if c.startswith(cat))
    assert found == [
        (cat, "", f"{cat}:position"),
        (cat, "g-0", f"{cat}:position-g-0"),
        (cat, "g-1", f"{cat}:position-g-1"),
        (f"{cat}:command", "h-0", f"{cat}:command+position-h-0"),
    ]


def test_list_position_streams_pages(local, monkeypatch):
    monkeypatch.setattr(P, "_PAGE", 3)
    for m in range(7):
        P.write_position(local, "acct", f"g-{m}", m, group="g", member=m, size=7)
    ids = [i for _c, i, _s in P.list_position_streams(local)]
    assert ids == [f"g-{m}" for m in range(7)]


class _Bare:
    """A store with only the Store interface (no list_categories / list_streams), as a new
    backend might start."""

    kind = "bare"

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        if name in ("list_categories", "list_streams", "share_lag"):
            raise AttributeError(name)
        return getattr(self._inner, name)


def test_list_position_streams_of_a_category_without_store_listings(local):
    for m in range(3):
        P.write_position(local, "acct", f"g-{m}", m, group="g", member=m, size=3)
        P.write_position(local, "acct", f"g-{m}", m + 1, group="g", member=m, size=3)
    P.write_position(local, "other", "g-0", 1)
    bare = _Bare(local)
    assert [i for _c, i, _s in P.list_position_streams(bare, "acct")] == ["g-0", "g-1", "g-2"]
    with pytest.raises(UsageError, match="cannot list its categories"):
        list(P.list_position_streams(bare))


def test_describe_and_size_through_a_bare_store(local):
    from eventodb_cli.services import group_view

    local.write_batch([NewMessage(f"acct-{i}", "E", "{}") for i in range(30)])
    for m in range(2):
        P.write_position(local, "acct", f"g-{m}", 10, group="g", member=m, size=2)
    bare = _Bare(local)
    a = group_view.describe(bare, "acct", group="g")
    b = group_view.describe(local, "acct", group="g")
    assert a["size"] == b["size"] == 2
    assert [r["lagMessages"] for r in a["members"]] == [r["lagMessages"] for r in b["members"]]
    assert sum(r["lagMessages"] for r in a["members"]) == 20


def test_share_lag_uses_a_store_fast_path_when_there_is_one(local):
    from eventodb_cli.services import group_view

    local.write_batch([NewMessage(f"acct-{i}", "E", "{}") for i in range(10)])
    generic = group_view.share_lag(local, "acct", 0, 2, 3, 10)
    calls = []

    class Fast(_Bare):
        def share_lag(self, *args):
            calls.append(args)
            return generic

    assert group_view.share_lag(Fast(local), "acct", 0, 2, 3, 10) == generic
    assert calls == [("acct", 0, 2, 3, 10)]
    count, oldest = generic
    assert count == sum(1 for m in local.iter_category("acct", member=0, size=2)
                        if 3 < m.global_position <= 10)
    assert oldest is not None


def test_older_eventide_updated_positions_are_read(store):
    cat = _cat()
    store.write(NewMessage(f"{cat}:position-old", "Updated", '{"position":8}'))
    assert P.read_position(store, cat, "old").position == 8
    P.write_position(store, cat, "old", 9)  # ours: Recorded
    assert P.read_position(store, cat, "old").position == 9
    assert store.stream_last(f"{cat}:position-old").type == "Recorded"
