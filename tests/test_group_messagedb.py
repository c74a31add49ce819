"""The group commands on Message DB (a real PostgreSQL with the real Message DB, tests/pg_fixture):
the same positions, lag and resets as on the local store and a server, through the Store
interface only."""

from __future__ import annotations

import json

from test_group_helpers import share_after, write_messages

from eventodb_cli.services import positions as P


def test_group_commands_on_message_db(cli, mdb_url):
    from eventodb_cli.store.postgres import PostgresStore

    args = ["--url", mdb_url]
    with PostgresStore(mdb_url) as st:
        res = write_messages(st, "account", 40)
        head = max(x.global_position for x in res)
        # an Eventide consumer's position, written as its PositionStore does
        r = cli("write", "account:position-legacy", "--type", "Recorded",
                "--data", json.dumps({"position": 30}), *args)
        assert r.exit_code == 0, r
        r = cli("group", "describe", "account", "--identifier", "legacy", *args,
                "--format", "json")
        assert r.exit_code == 0, r
        assert r.json()["members"][0]["lagMessages"] == head - 30

        r = cli("group", "reset", "account", "--group", "billing", "--size", 3,
                "--to-position", 12, "--execute", *args, "--format", "json")
        assert r.exit_code == 0, r
        r = cli("group", "describe", "account", "--group", "billing", *args, "--format", "json")
        assert r.exit_code == 0, r
        rep = r.json()
        assert rep["size"] == 3 and [x["position"] for x in rep["members"]] == [12, 12, 12]
        for x in rep["members"]:
            assert x["lagMessages"] == share_after(st, "account", x["member"], 3, 12)
        assert rep["lagMessages"] == head - 12
        msg = st.stream_last("account:position-billing-1")
        assert (msg.type, msg.data_obj) == ("Recorded", {"position": 12})
        assert P.read_position(st, "account", "billing-1").size == 3



def test_group_list_on_message_db(cli, mdb_url):
    from eventodb_cli.store.postgres import PostgresStore

    args = ["--url", mdb_url]
    with PostgresStore(mdb_url) as st:
        write_messages(st, "account", 5)
        for m in range(3):
            P.write_position(st, "account", f"billing-{m}", 2, group="billing", member=m, size=3)
        P.write_position(st, "account", "legacy", 1)
        r = cli("group", "list", *args, "--format", "json")
        assert r.exit_code == 0, r
        assert [(x["group"], x["identifier"], x["size"], x["membersSeen"]) for x in r.json()] \
            == [(None, "legacy", None, 1), ("billing", None, 3, 3)]
