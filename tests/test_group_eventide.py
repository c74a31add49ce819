"""Acceptance 2: Eventide interop, through nothing but plain ``eventodb write`` / ``stream get``.

Eventide's consumer-postgres keeps a consumer's position in the stream
``CATEGORY:position-IDENTIFIER`` (``Consumer::Postgres::PositionStore::StreamName``: the type
``position`` joins the category's types with ``+``), as ``Recorded`` messages whose data is
``{"position": P}``, P the global position of the last message processed, and reads back the last
one. Such a message must be read by ``group describe --identifier``, and ours must be exactly that.
"""

from __future__ import annotations

import json

import pytest
from test_group_helpers import new_category, target_for, write_messages


@pytest.fixture(params=["local", "remote"])
def target(request, tmp_path):
    return target_for(request, request.param, tmp_path)


def test_eventide_position_is_read_by_describe_identifier(cli, target):
    st, cat = target.store, new_category()
    res = write_messages(st, cat, 25)
    gp = sorted(x.global_position for x in res)
    # written exactly as Eventide's PositionStore#put does: type Recorded, data {position: P}
    r = cli("write", f"{cat}:position-someConsumer", "--type", "Recorded",
            "--data", json.dumps({"position": gp[14]}), *target.args)
    assert r.exit_code == 0, r
    r = cli("group", "describe", cat, "--identifier", "someConsumer", "--max-lag", 10,
            *target.args, "--format", "json")
    assert r.exit_code == 0, r
    (row,) = r.json()["members"]
    assert row["positionStream"] == f"{cat}:position-someConsumer"
    assert row["position"] == gp[14]
    assert row["lagMessages"] == 10 and row["status"] == "healthy"
    # Eventide reads the LAST Recorded: so do we
    cli("write", f"{cat}:position-someConsumer", "--type", "Recorded",
        "--data", json.dumps({"position": gp[-1]}), *target.args)
    r = cli("group", "describe", cat, "--identifier", "someConsumer", "--max-lag", 0,
            *target.args, "--format", "json")
    assert r.exit_code == 0 and r.json()["members"][0]["lagMessages"] == 0


def test_eventide_typed_category_position_stream(cli, target):
    st, base = target.store, new_category()
    cat = f"{base}:command"
    res = write_messages(st, cat, 5)
    top = max(x.global_position for x in res)
    r = cli("write", f"{cat}+position-handler", "--type", "Recorded",
            "--data", json.dumps({"position": top}), *target.args)
    assert r.exit_code == 0, r
    r = cli("group", "describe", cat, "--identifier", "handler", *target.args, "--format",
            "json")
    assert r.exit_code == 0, r
    row = r.json()["members"][0]
    assert row["positionStream"] == f"{cat}+position-handler" and row["position"] == top


def test_ours_are_eventide_positions(cli, target):
    """A group member's position, written by ``group reset --execute``, read with plain
    ``stream get`` / ``stream last``: the stream name, type and data Eventide's reader expects."""
    st, cat = target.store, new_category()
    res = write_messages(st, cat, 12)
    top = max(x.global_position for x in res)
    r = cli("group", "reset", cat, "--group", "billing", "--size", 2, "--to-position", top - 3,
            "--execute", *target.args, "--format", "json")
    assert r.exit_code == 0, r
    for member in (0, 1):
        stream = f"{cat}:position-billing-{member}"
        r = cli("stream", "get", stream, *target.args, "--format", "json")
        assert r.exit_code == 0, r
        (msg,) = r.json()
        assert msg["streamName"] == stream
        assert msg["type"] == "Recorded"
        assert msg["data"] == {"position": top - 3}  # exactly: Eventide's Recorded schema
        assert msg["metadata"] == {"group": "billing", "member": member, "size": 2}
        r = cli("stream", "last", stream, "--type", "Recorded", *target.args, "--format", "json")
        assert r.exit_code == 0 and r.json()["data"] == {"position": top - 3}
    # the typed form: account:command -> account:command+position-billing-0
    r = cli("group", "reset", f"{cat}:command", "--group", "billing", "--size", 1,
            "--to-earliest", "--execute", *target.args, "--format", "json")
    assert r.exit_code == 0, r
    r = cli("stream", "last", f"{cat}:command+position-billing-0", *target.args,
            "--format", "json")
    assert r.json()["type"] == "Recorded" and r.json()["data"] == {"position": 0}


def test_interop_through_the_executable(exe, server):
    """The installed executable against a real server, with only --url/--token."""
    cat = new_category()
    args = ["--url", server.url, "--token", server.token]
    r = exe("write", f"{cat}-1", "--type", "Opened", *args, "--format", "json")
    assert r.exit_code == 0, r
    gpos = r.json()["globalPosition"]
    r = exe("write", f"{cat}:position-legacy", "--type", "Recorded",
            "--data", json.dumps({"position": gpos}), *args)
    assert r.exit_code == 0, r
    r = exe("group", "describe", cat, "--identifier", "legacy", "--max-lag", 0, *args,
            "--format", "json")
    assert r.exit_code == 0, r
    assert r.json()["members"][0]["position"] == gpos
    r = exe("group", "list", *args, "--format", "json")
    assert {"category": cat, "identifier": "legacy"}.items() <= \
        [x for x in r.json() if x["category"] == cat][0].items()
