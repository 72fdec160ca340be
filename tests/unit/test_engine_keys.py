"""The engine keystore on SQLite: keys encrypted at rest, idempotent per root id, roles."""
import os
import sqlite3
import stat
from concurrent.futures import ThreadPoolExecutor

import pytest

from cic_seed.config import load_settings
from cic_seed.errors import ConfigError
from cic_seed.signer import Signer
from devnet.engine_keys import KeyStore, keystore_from_settings, load_or_create_secret, normalize_address


@pytest.fixture
def store(tmp_path):
    with KeyStore(tmp_path / "engine.sqlite", tmp_path / "engine.secret") as keystore:
        yield keystore


def test_create_returns_40_lowercase_hex_and_the_key_signs_for_it(store):
    address = store.create()
    assert len(address) == 40 and address == address.lower() and not address.startswith("0x")
    assert Signer(store.private_key(address)).address.lower() == "0x" + address


def test_key_is_encrypted_at_rest_and_the_secret_is_0600(store, tmp_path):
    address = store.create()
    key_hex = store.private_key(address).hex()
    raw = (tmp_path / "engine.sqlite").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("engine.sqlite-*"))
    assert key_hex.encode() not in raw and bytes.fromhex(key_hex) not in raw
    rows = sqlite3.connect(tmp_path / "engine.sqlite").execute("SELECT key_ciphertext FROM ethereum").fetchall()
    assert len(rows) == 1 and key_hex not in rows[0][0]
    assert stat.S_IMODE(os.stat(tmp_path / "engine.secret").st_mode) == 0o600


def test_create_is_idempotent_per_root_id(store):
    first = store.create(root_id="root-1")
    assert store.create(root_id="root-1") == first
    assert store.create(root_id="root-2") != first
    assert store.count() == 2


def test_concurrent_creates_of_one_root_id_make_one_key(store):
    with ThreadPoolExecutor(8) as pool:
        addresses = set(pool.map(lambda _: store.create(root_id="same-root"), range(32)))
    assert len(addresses) == 1 and store.count() == 1


@pytest.mark.parametrize("form", [str.lower, str.upper, lambda a: "0x" + a, lambda a: "0x" + a.upper()])
def test_have_accepts_every_address_form(store, form):
    address = store.create()
    assert store.have(form(address))
    checksum = Signer(store.private_key(address)).address
    assert store.have(checksum)
    assert not store.have("0x" + "11" * 20)


def test_normalize_address_rejects_garbage():
    with pytest.raises(ValueError):
        normalize_address("0x1234")
    with pytest.raises(ValueError):
        normalize_address("zz" * 20)


def test_roles_are_set_replaced_and_listed(store):
    gifter, writer = store.create(), store.create()
    store.set_role("GAS_GIFTER", gifter)
    store.set_role("ACCOUNT_REGISTRY_WRITER", "0x" + writer)
    assert store.role("GAS_GIFTER") == gifter
    store.set_role("GAS_GIFTER", writer)
    assert store.roles() == {"GAS_GIFTER": writer, "ACCOUNT_REGISTRY_WRITER": writer}
    assert store.role("DEFAULT") is None


def test_keys_survive_reopening_and_another_secret_cannot_read_them(tmp_path):
    with KeyStore(tmp_path / "db.sqlite", tmp_path / "a.secret") as first:
        address = first.create(root_id="r")
        key = first.private_key(address)
    with KeyStore(tmp_path / "db.sqlite", tmp_path / "a.secret") as again:
        assert again.private_key(address) == key and again.create(root_id="r") == address
    with KeyStore(tmp_path / "db.sqlite", tmp_path / "other.secret") as stranger:
        with pytest.raises(ConfigError, match="does not decrypt"):
            stranger.private_key(address)


def test_secret_is_created_once(tmp_path):
    first = load_or_create_secret(tmp_path / "s")
    assert load_or_create_secret(tmp_path / "s") == first
    assert list(tmp_path.iterdir()) == [tmp_path / "s"]


def test_database_location_from_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("DEVNET_ENGINE_DB", raising=False)
    default = keystore_from_settings(load_settings(use_devnet=False), tmp_path)
    assert default.url == str(tmp_path / "engine.sqlite") and not default.is_postgres
    assert not (tmp_path / "engine.sqlite").exists()  # the constructor does no I/O
    monkeypatch.setenv("DEVNET_ENGINE_DB", "postgresql://u:pw@127.0.0.1:5432/test")
    pg = keystore_from_settings(load_settings(use_devnet=False), tmp_path)
    assert pg.is_postgres and "pw" not in repr(pg)


def test_unreachable_postgres_is_a_config_error(tmp_path):
    store = KeyStore("postgresql://nobody@127.0.0.1:1/none", tmp_path / "s")
    with pytest.raises(ConfigError, match="DEVNET_ENGINE_DB"):
        store.open()
