"""Every Message DB vector through member_for, the name parsers, the local store and the CLI."""

from __future__ import annotations

import json
import uuid

import pytest

from eventodb_cli.domain.hashing import hash64, member_for, stream_hash
from eventodb_cli.domain.message import new_message
from eventodb_cli.domain.streams import cardinal_id, category, stream_id
from eventodb_cli.store.local import LocalStore

from conftest import load_vectors

VECTORS = load_vectors()


def test_vector_file_is_complete():
    assert len(VECTORS) == 1500
    assert sum(1 for v in VECTORS if v["id"] is None) == 15
    assert all(m is None for v in VECTORS if v["id"] is None for m in v["members"].values())


def test_every_vector_name_parts():
    for v in VECTORS:
        s = v["stream"]
        assert category(s) == v["category"], s
        assert stream_id(s) == v["id"], s
        if v["id"] is None:
            assert cardinal_id(s) is None, s
        else:
            assert cardinal_id(s) == v["cardinal_id"], s


def test_every_vector_hash_and_member():
    checked = 0
    for v in VECTORS:
        s = v["stream"]
        if v["hash64"] is None:
            assert stream_hash(s) is None
        else:
            assert stream_hash(s) == int(v["hash64"]) == hash64(v["cardinal_id"]), s
        assert sorted(map(int, v["members"])) == list(range(1, 17))
        for size, member in v["members"].items():
            assert member_for(s, int(size)) == member, (s, size)
            checked += 1
    assert checked == 1500 * 16


def test_protocol_examples():
    assert hash64("123") == 2318431741638412123
    assert [member_for("account-123", n) for n in (2, 3, 4)] == [1, 1, 3]
    assert hash64("1") == -4266524885998034046
    assert [member_for("account-1", n) for n in (2, 3, 4)] == [0, 0, 2]
    assert member_for("account-123+retry", 4) == member_for("account-123", 4)


def test_member_for_rejects_bad_size():
    with pytest.raises(ValueError):
        member_for("a-1", 0)


@pytest.fixture(scope="module")
def vector_store(tmp_path_factory):
    """A store with one message per vector stream."""
    path = tmp_path_factory.mktemp("vec") / "vectors.db"
    s = LocalStore(path, create=True)
    s.write_batch([new_message(v["stream"], "Vector", {"n": i}, id=str(uuid.UUID(int=i + 1)))
                   for i, v in enumerate(VECTORS)])
    s.close()
    return str(path)


def _expected(cat: str, size: int, member: int) -> list[str]:
    return [v["stream"] for v in VECTORS
            if v["category"] == cat and v["members"][str(size)] == member]


def test_store_member_reads_match_vectors(vector_store):
    s = LocalStore(vector_store)
    cats = sorted({v["category"] for v in VECTORS if v["category"] != ""})
    for size in range(1, 17):
        for cat in cats:
            for member in range(size):
                got = [m.stream_name for m in s.category_get(cat, member=member, size=size,
                                                             batch_size=None)]
                assert got == _expected(cat, size, member), (cat, size, member)
    # category "" is every stream: filter to the streams whose category is ""
    for member in range(3):
        got = [m.stream_name for m in s.category_get("", member=member, size=3, batch_size=None)
               if category(m.stream_name) == ""]
        assert got == _expected("", 3, member)
    s.close()


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7, 16])
def test_cli_member_reads_match_vectors(vector_store, cli, size):
    """Acceptance 2: through the CLI, `category get --member M --size N --all --format ndjson`
    returns for every member exactly the vector streams assigned to it."""
    cats = sorted({v["category"] for v in VECTORS if v["category"] != ""})
    for cat in cats:
        seen: list[str] = []
        for member in range(size):
            r = cli("category", "get", cat, "--member", member, "--size", size, "--all",
                    "--batch-size", 7, "--format", "ndjson", "--store", vector_store)
            assert r.exit_code == 0, r
            got = [json.loads(line)["streamName"] for line in r.stdout.splitlines()]
            assert got == _expected(cat, size, member), (cat, size, member)
            seen += got
        # together the members cover every stream of the category that has an id, once
        assert sorted(seen) == sorted(v["stream"] for v in VECTORS
                                      if v["category"] == cat and v["id"] is not None)


def test_cli_assign_matches_vectors(cli):
    names = "\n".join(v["stream"] for v in VECTORS) + "\n"
    r = cli("assign", "-", "--size", 5, "--format", "ndjson", input=names)
    assert r.exit_code == 0, r
    rows = r.ndjson()
    assert len(rows) == len(VECTORS)
    for row, v in zip(rows, VECTORS):
        assert row["stream"] == v["stream"]
        assert row["cardinalId"] == (v["cardinal_id"] if v["id"] is not None else None)
        assert row["hash64"] == v["hash64"]
        assert row["member"] == v["members"]["5"]
