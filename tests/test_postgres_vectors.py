"""Acceptance 2 of issue 11: all 1,500 hash vectors through the CLI on the real Message DB.

The vector streams are loaded once (one message each, written by PostgresStore through
``write_message``) into one category ``vec``: ``vec-ID`` keeps each vector's id, so its cardinal
id and hash are the vector's own (streams without an id become messages of the stream ``vec``).
Then for every group size 1-16 and every member, ``eventodb category get vec --member M --size N
--all`` through the CLI returns exactly what Message DB's own ``get_category_messages('vec', 1,
-1, NULL, M, N)`` returns (same messages, same order), and that is the vector file's assignment.
The vectors' own category names (Unicode, spaces, dots) are checked too, for one group size.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest

from eventodb_cli.domain.message import new_message
from eventodb_cli.store.postgres import PostgresStore

from conftest import load_vectors

VECTORS = load_vectors()


def _vec_stream(v: dict) -> str:
    return "vec" if v["id"] is None else f"vec-{v['id']}"


@pytest.fixture(scope="module")
def vector_db(messagedb):
    """Global position i+1 holds vector i twice over: once in ``vec``, once under its own name
    (positions 1501...)."""
    db = messagedb.create_db()
    with PostgresStore(messagedb.url(db)) as s:
        res = s.write_batch(
            [new_message(_vec_stream(v), "Vector", {"n": i}, id=str(uuid.UUID(int=i + 1)))
             for i, v in enumerate(VECTORS)]
            + [new_message(v["stream"], "Vector", {"n": i}, id=str(uuid.UUID(int=5000 + i)))
               for i, v in enumerate(VECTORS)])
    assert [r.global_position for r in res] == list(range(1, 3001))
    return messagedb.socket_url(db)


def _own(pg, cat: str, member: int, size: int) -> list[int]:
    return [r[0] for r in pg.execute(
        "SELECT global_position FROM get_category_messages(%s, 1, -1, NULL, %s, %s)",
        (cat, member, size)).fetchall()]


def _cli_read(cli, url: str, cat: str, member: int, size: int) -> list[int]:
    r = cli("category", "get", cat, "--member", member, "--size", size, "--all",
            "--format", "ndjson", "--url", url)
    assert r.exit_code == 0, r
    return [m["globalPosition"] for m in r.ndjson()]


def test_all_vectors_sizes_1_to_16_cli_equals_get_category_messages(vector_db, cli):
    with psycopg.connect(vector_db, autocommit=True,
                         options="-c search_path=message_store,public") as pg:
        for size in range(1, 17):
            seen = []
            for member in range(size):
                got = _cli_read(cli, vector_db, "vec", member, size)
                assert got == _own(pg, "vec", member, size), (size, member)
                expected = [i + 1 for i, v in enumerate(VECTORS)
                            if v["members"][str(size)] == member]
                assert got == expected, (size, member)
                seen += got
            # every vector with an id, exactly once per size
            assert sorted(seen) == [i + 1 for i, v in enumerate(VECTORS) if v["id"] is not None]


def test_vector_categories_through_message_db_category_function(vector_db, cli):
    cats = sorted({v["category"] for v in VECTORS if v["category"] != ""})
    size = 3
    with psycopg.connect(vector_db, autocommit=True,
                         options="-c search_path=message_store,public") as pg:
        for cat in cats:
            for member in range(size):
                got = _cli_read(cli, vector_db, cat, member, size)
                assert got == _own(pg, cat, member, size), (cat, member)
                assert got == [1501 + i for i, v in enumerate(VECTORS)
                               if v["category"] == cat and v["members"]["3"] == member], cat
