"""The custodial engine's keystore: private keys encrypted at rest, and the role accounts.

Tables follow cic-eth's: ``ethereum`` (the signer's keystore, one row per custodial key, plus
the root id of the API chain that created it, so a redelivered ``create`` gets the same key)
and ``account_role(tag, address_hex)``. Keys are encrypted with Fernet under a secret kept in
the devnet state dir (mode 0600). The database is SQLite (a path) or PostgreSQL (a
``postgresql://`` URL, via psycopg). Addresses are stored as 40 lowercase hex digits.
"""
import logging
import os
import sqlite3
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from cic_seed.errors import ConfigError
from cic_seed.signer import Signer

log = logging.getLogger(__name__)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS ethereum (
        wallet_address_hex VARCHAR(40) PRIMARY KEY,
        key_ciphertext TEXT NOT NULL,
        root_id VARCHAR(64) UNIQUE,
        date_created TIMESTAMP DEFAULT CURRENT_TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS account_role (
        tag VARCHAR(64) PRIMARY KEY,
        address_hex VARCHAR(40) NOT NULL)""",
)


def normalize_address(address: str) -> str:
    """Any address form (0x-checksum, bare, upper or lower case) as 40 lowercase hex digits."""
    text = str(address).lower()
    if text.startswith("0x"):
        text = text[2:]
    if len(text) != 40 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"not an address: {address!r}")
    return text


def load_or_create_secret(path: Path) -> bytes:
    """The Fernet key in ``path``; created (0600, atomically, race-free) on first use."""
    path = Path(path)
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(Fernet.generate_key())
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # fails if another process won the race: then use theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes().strip()


class KeyStore:
    """Custodial keys in SQLite or PostgreSQL. Thread-safe; reopens itself after a fork."""

    def __init__(self, url: str, secret_path: Path):
        self.url = str(url)
        self.secret_path = Path(secret_path)
        self._conn = None
        self._fernet = None
        self._pid = None
        self._lock = threading.Lock()

    @property
    def is_postgres(self) -> bool:
        return self.url.startswith(("postgresql://", "postgres://"))

    def open(self) -> "KeyStore":
        """Connect, create the tables if needed, and load (or create) the encryption secret."""
        self._fernet = Fernet(load_or_create_secret(self.secret_path))
        if self.is_postgres:
            import psycopg
            try:
                self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
            except psycopg.OperationalError as e:
                raise ConfigError(f"cannot open the engine database {_redact(self.url)}: {e.args[0].strip()}; "
                                  "check DEVNET_ENGINE_DB") from None
        else:
            Path(self.url).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.url, timeout=30, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._pid = os.getpid()
        for statement in SCHEMA:
            self._execute(statement)
        return self

    def close(self):
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    def _execute(self, sql, params=()):
        if self._conn is None or self._pid != os.getpid():
            self.open()
        if self.is_postgres:
            sql = sql.replace("?", "%s")
        with self._lock:
            cursor = self._conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def add_key(self, private_key: bytes, root_id=None) -> str:
        """Store a key; returns its address. With a ``root_id`` already used, returns that key's address."""
        address = normalize_address(Signer(private_key).address)
        ciphertext = self._fernet_ready().encrypt(private_key).decode()
        self._execute("INSERT INTO ethereum (wallet_address_hex, key_ciphertext, root_id) VALUES (?, ?, ?) "
                      "ON CONFLICT DO NOTHING", (address, ciphertext, root_id))
        if root_id is None:
            return address
        return self.address_for_root(root_id)

    def create(self, root_id=None) -> str:
        """A new key (idempotent per ``root_id``); returns its address as 40 lowercase hex digits."""
        if root_id is not None:
            existing = self.address_for_root(root_id)
            if existing:
                log.info("root id %s already created %s", root_id, existing)
                return existing
        return self.add_key(os.urandom(32), root_id)

    def address_for_root(self, root_id: str):
        rows = self._execute("SELECT wallet_address_hex FROM ethereum WHERE root_id = ?", (root_id,))
        return rows[0][0] if rows else None

    def have(self, address: str) -> bool:
        rows = self._execute("SELECT 1 FROM ethereum WHERE wallet_address_hex = ?", (normalize_address(address),))
        return bool(rows)

    def private_keys(self, addresses) -> dict:
        """address (normalised) -> private key bytes, for those held; one query per 500 addresses."""
        wanted = [normalize_address(a) for a in addresses]
        keys = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._execute(f"SELECT wallet_address_hex, key_ciphertext FROM ethereum "
                                 f"WHERE wallet_address_hex IN ({marks})", tuple(chunk))
            for address, ciphertext in rows:
                keys[address] = self._decrypt(ciphertext)
        return keys

    def private_key(self, address: str):
        return self.private_keys([address]).get(normalize_address(address))

    def count(self) -> int:
        return self._execute("SELECT COUNT(*) FROM ethereum")[0][0]

    def set_role(self, tag: str, address: str):
        """Tag an address with a role (GAS_GIFTER, ACCOUNT_REGISTRY_WRITER, ...); replaces an older one."""
        self._execute("INSERT INTO account_role (tag, address_hex) VALUES (?, ?) "
                      "ON CONFLICT (tag) DO UPDATE SET address_hex = excluded.address_hex",
                      (tag, normalize_address(address)))

    def role(self, tag: str):
        rows = self._execute("SELECT address_hex FROM account_role WHERE tag = ?", (tag,))
        return rows[0][0] if rows else None

    def roles(self) -> dict:
        return dict(self._execute("SELECT tag, address_hex FROM account_role"))

    def _fernet_ready(self):
        if self._fernet is None or self._pid != os.getpid():
            self.open()
        return self._fernet

    def _decrypt(self, ciphertext: str) -> bytes:
        try:
            return self._fernet_ready().decrypt(ciphertext.encode())
        except InvalidToken:
            raise ConfigError(f"the engine secret {self.secret_path} does not decrypt the keys in "
                              f"{_redact(self.url)}: the database belongs to another devnet state dir") from None

    def __repr__(self):
        return f"KeyStore({_redact(self.url)})"


def _redact(url: str) -> str:
    """A database URL without its password."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}" if ":" in credentials else url
    return url


def keystore_from_settings(settings, state_dir: Path) -> KeyStore:
    """DEVNET_ENGINE_DB (a path or postgresql:// URL), else state_dir/engine.sqlite; secret in state_dir."""
    url = settings.get("DEVNET_ENGINE_DB")
    if not url:
        url = str(Path(state_dir) / "engine.sqlite")
    elif "://" not in url:
        url = str(settings.path("DEVNET_ENGINE_DB"))
    return KeyStore(url, Path(state_dir) / "engine.secret")
