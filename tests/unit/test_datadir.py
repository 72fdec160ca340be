"""The data directory on tmp_path: layout, lookups, protection, staging, journals."""
import json
import os
from types import SimpleNamespace

import pytest

from cic_seed.chainspec import ChainSpec
from cic_seed.datadir import AddressTable, Datadir
from cic_seed.errors import DatadirError
from cic_seed.files import atomic_write
from cic_seed.generate import generate_users
from cic_seed.pointers import phone_pointer
from cic_seed.progress import Journal

BLOXBERG = ChainSpec.parse("evm:bloxberg:8996")
ARGS = {"format": 1, "seed": 4, "user_count": 40}


def make(path, count=40, seed=4, force=False, reset=False, threshold=9):
    datadir = Datadir(path)
    users = list(generate_users(seed, count, gift_threshold=threshold, tags=("individual", "vendor")))
    with datadir.create(force=force, reset=reset) as generation:
        for user in users:
            generation.add(user)
        generation.commit(dict(ARGS, seed=seed, user_count=count))
    return datadir, users


def test_constructor_does_no_io(tmp_path):
    Datadir(tmp_path / "nothing" / "here")
    assert not (tmp_path / "nothing").exists()


def test_layout(tmp_path):
    datadir, users = make(tmp_path / "d")
    root = tmp_path / "d"
    assert sorted(p.name for p in root.iterdir()) == [".complete", "balances.csv", "old", "phone", "tags.csv"]
    for user in users:
        addr = user.person.old_address()[2:].upper()
        record = root / "old" / addr[:2] / addr[2:4] / f"{addr}.json"
        assert json.loads(record.read_text()) == user.person.serialize()
        assert datadir.old_path(user.person.old_address()) == record
        pointer = phone_pointer(user.person.tel)
        assert (root / "phone" / pointer[:2] / pointer[2:4] / pointer).read_text() == addr
    balances = (root / "balances.csv").read_text().splitlines()
    assert balances == [f"{u.person.old_address()},{u.balance}" for u in users]
    assert (root / "tags.csv").read_text().splitlines()[0] == f"{users[0].person.old_address()},individual,vendor"
    assert datadir.marker() == dict(ARGS) and datadir.require_complete() == dict(ARGS)


def test_iter_old_streams_in_address_order(tmp_path):
    datadir, users = make(tmp_path / "d")
    people = list(datadir.iter_old())
    assert [p.old_address() for p in people] == sorted((u.person.old_address() for u in users), key=str.upper)
    assert {json.dumps(p.serialize()) for p in people} == {json.dumps(u.person.serialize()) for u in users}


def test_balances_and_tags_lookups_take_any_address_form(tmp_path):
    datadir, users = make(tmp_path / "d")
    balances, tags = datadir.balances(), datadir.tags()
    assert isinstance(balances, AddressTable) and len(balances) == len(users) == len(tags)
    for user in users:
        address = user.person.old_address()
        for form in (address, address.lower(), address[2:].upper(), bytes.fromhex(address[2:])):
            assert balances[form] == user.balance and balances.get(form) == user.balance
            assert tags[form] == ("individual", "vendor")
    assert balances.get("0x" + "00" * 20) is None and ("0x" + "00" * 20) not in balances
    assert len({id(tags[u.person.old_address()]) for u in users}) == 1  # one shared tuple


def test_corrupt_files_name_the_file(tmp_path):
    datadir, users = make(tmp_path / "d", count=5)
    record = datadir.old_path(users[2].person.old_address())
    record.write_text("{not json")
    with pytest.raises(DatadirError, match=str(record)):
        list(datadir.iter_old())
    skipped = []
    assert len(list(datadir.iter_old(skipped))) == 4 and str(record) in str(skipped[0])
    other = datadir.old_path(users[3].person.old_address())
    os.rename(other, other.with_name("0" * 40 + ".json"))  # a record under the wrong name
    skipped = []
    assert len(list(datadir.iter_old(skipped))) == 3
    assert "its old address is" in str(skipped[0]) + str(skipped[1])
    (tmp_path / "d" / "balances.csv").write_text("0xnothex,5\n")
    with pytest.raises(DatadirError, match=r"balances.csv line 1"):
        datadir.balances()
    (tmp_path / "d" / "balances.csv").write_text(f"{users[0].person.old_address()},ten\n")
    with pytest.raises(DatadirError, match="not a whole number"):
        datadir.balances()
    (tmp_path / "d" / ".complete").write_text("{")
    with pytest.raises(DatadirError, match="corrupt"):
        datadir.marker()


def test_missing_generation_is_a_clear_error(tmp_path):
    datadir = Datadir(tmp_path / "empty")
    assert datadir.marker() is None
    with pytest.raises(DatadirError, match="create_import_users.py"):
        datadir.require_complete()
    with pytest.raises(DatadirError, match="balances.csv is missing"):
        datadir.balances()


def test_check_protects_a_non_empty_datadir(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(DatadirError, match="not empty.*--force"):
        Datadir(tmp_path / "full").check()
    Datadir(tmp_path / "full").check(force=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatadirError, match="is a file"):
        Datadir(tmp_path / "file").check()
    with pytest.raises(DatadirError, match="writable"):
        Datadir(tmp_path / "file" / "below").check()
    Datadir(tmp_path / "new" / "deeper").check()
    assert not (tmp_path / "new").exists()
    with pytest.raises(DatadirError, match="does not look like a datadir"):
        Datadir(tmp_path / "full").check(reset=True)  # --dir . --reset must not wipe a checkout
    (tmp_path / "crashed" / ".partial").mkdir(parents=True)  # only a dead run's staging: treated as empty
    Datadir(tmp_path / "crashed").check()


def test_an_error_mid_generation_keeps_the_previous_generation(tmp_path):
    datadir, users = make(tmp_path / "d", count=10)
    before = sorted(str(p) for p in (tmp_path / "d").rglob("*"))
    with pytest.raises(RuntimeError):
        with datadir.create(force=True) as generation:
            generation.add(next(iter(generate_users(99, 1))))
            raise RuntimeError("killed")
    assert sorted(str(p) for p in (tmp_path / "d").rglob("*")) == before
    assert datadir.marker()["seed"] == 4


def test_force_drops_stale_import_results_but_keeps_keys_and_foreign_files(tmp_path):
    datadir, users = make(tmp_path / "d", count=5)
    person = users[0].person
    datadir.write_new(person, "0x" + "11" * 20)
    datadir.write_phone(person.tel, "0x" + "11" * 20)
    datadir.journal("users").append([("done", "x")])
    datadir.keystore_dir.mkdir()
    (datadir.keystore_dir / "key.json").write_text("{}")
    (tmp_path / "d" / "README").write_text("mine")
    make(tmp_path / "d", count=7, seed=5, force=True)
    names = sorted(p.name for p in (tmp_path / "d").iterdir())
    assert names == [".complete", "README", "balances.csv", "keystore", "old", "phone", "tags.csv"]
    assert len(list(datadir.iter_old())) == 7 and not (tmp_path / "d" / "phone" / "new").exists()
    make(tmp_path / "d", count=3, seed=6, reset=True)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [".complete", "balances.csv", "old", "phone",
                                                                    "tags.csv"]


def test_import_side_records_and_queues(tmp_path):
    datadir, users = make(tmp_path / "d", count=3)
    person = users[0].person
    new = "0x" + "ab" * 20
    person.add_identity(BLOXBERG, new)
    path = datadir.write_new(person, new)
    assert path == tmp_path / "d" / "new" / "AB" / "AB" / ("AB" * 20 + ".json")
    assert datadir.read_person(path) == person
    links = list(datadir.iter_queue("person"))
    assert [link.name for link in links] == ["AB" * 20 + ".json"]
    assert links[0].is_symlink() and links[0].resolve() == path.resolve()
    datadir.write_phone(person.tel, new)
    assert datadir.phone_address(person.tel, new=True) == "AB" * 20
    assert datadir.phone_address(person.tel) == person.old_address()[2:].upper()
    assert datadir.phone_address("+254700000000") is None
    phone_links = list(datadir.iter_queue("phone"))
    assert phone_links[0].name == phone_pointer(person.tel) and phone_links[0].read_text() == "AB" * 20
    datadir.write_new(person, new)  # again: still one queue entry
    assert len(list(datadir.iter_queue("person"))) == 1


def test_transactions_round_trip(tmp_path):
    datadir = Datadir(tmp_path)
    tx = SimpleNamespace(hash="0x" + "CD" * 32, raw=b"\x02\xf8raw")
    datadir.write_txs([tx])
    assert datadir.read_tx(tx.hash) == b"\x02\xf8raw" and datadir.read_tx("0x" + "00" * 32) is None


def test_atomic_write_replaces_whole_files_with_the_mode_from_the_start(tmp_path):
    target = tmp_path / "sub" / "key.json"
    atomic_write(target, "one", mode=0o600)
    atomic_write(target, b"two", mode=0o600)
    assert target.read_text() == "two" and os.stat(target).st_mode & 0o777 == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["key.json"]  # no temp file left


def test_journal_appends_and_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "journal" / "users.log"
    with Journal(path) as journal:
        assert list(journal.records()) == []
        journal.append([("done", "A1", "B1"), ("done", "A2", "B2")])
        journal.append([])
    with open(path, "ab") as f:
        f.write(b"done A3 B")  # a crash in the middle of a write
    journal = Journal(path)
    assert list(journal.records()) == [["done", "A1", "B1"], ["done", "A2", "B2"]]
    journal.append([("done", "A3", "B3")])
    journal.close()
    assert path.read_text() == "done A1 B1\ndone A2 B2\ndone A3 B3\n"
    with pytest.raises(ValueError):
        Journal(path).append([("two words", "x")])
