"""The data directory: every file the scripts exchange, documented in one place (the 2021 layout).

ADDR is an address as 40 upper-case hex digits without 0x, XX/YY its first two byte pairs.
PTR is a cic-meta pointer (64 lower-case hex digits), PP/QQ its first two byte pairs.

==========================  ===============================================================
``old/XX/YY/ADDR.json``     generated Person record, ADDR its old address (create)
``new/XX/YY/ADDR.json``     the Person after import, new address added; ADDR the new address
``meta/ADDR.json``          symlink to ``new/.../ADDR.json``: person metadata waiting for upload
``phone/PP/QQ/PTR``         old ADDR of the user whose phone pointer is PTR (create)
``phone/new/PP/QQ/PTR``     new ADDR of that user (import)
``phone/meta/PTR``          symlink to ``phone/new/.../PTR``: phone pointer waiting for upload
``balances.csv``            ``old_address,amount`` per user (0x checksum address, smallest unit)
``tags.csv``                ``old_address,tag[,tag...]`` per user: the custom-metadata tags
``keystore/``               v3 keyfiles of sovereign accounts (mode 0600)
``txs/<hash>``              raw signed transactions sent (0x hex)
``journal/<name>.log``      append-only resume journals of the import scripts
``.complete``               JSON arguments of the generation, written last; absent = incomplete
``.import``                 the backend (eth, cic_eth, cic_ussd) that imports it; one per datadir
``.partial/``               a generation being written; moved into place when it is complete
==========================  ===============================================================

Both CSV files follow generation order and have no header. Lookups load them into a dict keyed
by the 20 address bytes: about 130 bytes per user (13 MB at 100,000 users), and O(1) for the
import scripts, which walk ``old/`` in address order, not in file order; a sorted merge would
need the CSV sorted at creation, which costs the same memory once.
"""
import csv
import json
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Iterator

from .errors import DatadirError
from .person import Person, PersonFormatError
from .pointers import address_bytes, phone_pointer
from .progress import Journal

logger = logging.getLogger(__name__)

MARKER = ".complete"
STAGING = ".partial"
GENERATED = ("old", "phone", "balances.csv", "tags.csv")
DERIVED = ("new", "meta", "txs", "journal", ".import")  # import results: stale once the generation changes
IMPORTED_BY = ".import"
QUEUES = {"person": "meta", "phone": os.path.join("phone", "meta")}


def address_hex(address) -> str:
    """ADDR: 40 upper-case hex digits without 0x."""
    return address_bytes(address).hex().upper()


def shard(name: str) -> str:
    """``XX/YY`` of a hex name."""
    return f"{name[0:2]}/{name[2:4]}"


class AddressTable:
    """A read-only map from addresses (any form) to values, keyed by the 20 address bytes."""

    def __init__(self, values: dict):
        self._values = values

    def get(self, address, default=None):
        return self._values.get(address_bytes(address), default)

    def __getitem__(self, address):
        return self._values[address_bytes(address)]

    def __contains__(self, address):
        return address_bytes(address) in self._values

    def __len__(self):
        return len(self._values)

    def total(self) -> int:
        """Sum of the values (for tables of amounts)."""
        return sum(self._values.values())

    def count_nonzero(self) -> int:
        return sum(1 for v in self._values.values() if v)


class Datadir:
    """One data directory. The constructor only stores the path; every method says what it touches."""

    def __init__(self, path):
        self.path = Path(path)

    def old_path(self, address) -> Path:
        name = address_hex(address)
        return self.path / "old" / shard(name) / f"{name}.json"

    def new_path(self, address) -> Path:
        name = address_hex(address)
        return self.path / "new" / shard(name) / f"{name}.json"

    @property
    def keystore_dir(self) -> Path:
        return self.path / "keystore"

    def check(self, force: bool = False, reset: bool = False):
        """Raise DatadirError unless a generation may be written here (writes nothing)."""
        if self.path.exists() and not self.path.is_dir():
            raise DatadirError(f"datadir {self.path} is a file, not a directory: choose another --dir")
        existing = self.path
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise DatadirError(f"cannot write to {existing}: choose a writable --dir")
        names = {entry.name for entry in os.scandir(self.path)} - {STAGING} if self.path.is_dir() else set()
        if names and not (force or reset):
            raise DatadirError(f"datadir {self.path} is not empty: pass --force to replace its data, "
                               "--reset to empty it first, or choose another --dir")
        if names and reset and not names & {MARKER, STAGING, *GENERATED, *DERIVED}:
            raise DatadirError(f"{self.path} does not look like a datadir (no old/, .complete, ...): "
                               "--reset will not empty it; choose another --dir")

    def create(self, force: bool = False, reset: bool = False) -> "Generation":
        """Check, empty the datadir if ``reset``, and open a staging area for a new generation."""
        self.check(force, reset)
        if reset and self.path.is_dir():
            for entry in os.scandir(self.path):
                _remove(Path(entry.path))
        self.path.mkdir(parents=True, exist_ok=True)
        staging = self.path / STAGING
        _remove(staging)
        staging.mkdir()
        return Generation(self, staging)

    def marker(self) -> dict | None:
        """The arguments of the complete generation here, or None if there is none."""
        try:
            text = (self.path / MARKER).read_text()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise DatadirError(f"cannot read {self.path / MARKER}: {e.strerror}") from None
        try:
            return json.loads(text)
        except ValueError:
            raise DatadirError(f"{self.path / MARKER} is corrupt: generate again with --force") from None

    def claim_import(self, backend: str) -> None:
        """Record that ``backend`` imports this datadir; refuse if another backend did already
        (a second backend would give every user a second account)."""
        path = self.path / IMPORTED_BY
        try:
            earlier = path.read_text().strip()
        except FileNotFoundError:
            atomic_write(path, backend + "\n")
            return
        if earlier != backend:
            raise DatadirError(f"{self.path} was imported through {earlier}; importing it through {backend} too would "
                               "give its users second accounts: use another datadir (--dir / DATADIR=...)")

    def require_complete(self) -> dict:
        """The generation's arguments; DatadirError if the datadir holds no complete generation."""
        marker = self.marker()
        if marker is None:
            raise DatadirError(f"{self.path} holds no complete generation: "
                               f"run scripts/create_import_users.py --dir {self.path} N first")
        return marker

    def read_person(self, path) -> Person:
        """The Person in a record file; DatadirError naming the file if it is unreadable."""
        try:
            return Person.deserialize(json.loads(Path(path).read_bytes()))
        except OSError as e:
            raise DatadirError(f"cannot read {path}: {e.strerror}") from None
        except (ValueError, PersonFormatError) as e:
            raise DatadirError(f"corrupt person record {path}: {e}") from None

    def iter_old(self, skipped: list | None = None) -> Iterator[Person]:
        """The generated users in address order, one file at a time (constant memory).

        A corrupt record raises DatadirError, or, when a ``skipped`` list is given, is appended
        to it as that error and passed over, so an import can go on and report it at the end."""
        for path in _walk_sharded(self.path / "old", ".json"):
            try:
                yield self._checked_old(path)
            except DatadirError as e:
                if skipped is None:
                    raise
                skipped.append(e)

    def _checked_old(self, path) -> Person:
        person = self.read_person(path)
        try:
            matches = address_hex(person.old_address()) == path.stem
        except PersonFormatError as e:
            raise DatadirError(f"corrupt person record {path}: {e}") from None
        if not matches:
            raise DatadirError(f"corrupt person record {path}: its old address is {person.old_address()}")
        return person

    def write_new(self, person: Person, new_address, queue_meta: bool = True) -> Path:
        """Store the imported Person under its new address; queue it for metadata upload."""
        path = self.new_path(new_address)
        atomic_write(path, json.dumps(person.serialize(), separators=(",", ":")), durable=False)
        if queue_meta:
            self.queue_person(new_address)
        return path

    def queue_person(self, new_address) -> None:
        """Queue the ``new/`` record of ``new_address`` (already written) for metadata upload."""
        path = self.new_path(new_address)
        _link(self.path / "meta" / path.name, path)

    def write_phone(self, tel: str, new_address, queue_meta: bool = True) -> Path:
        """Store the new address of the phone ``tel``; queue its phone pointer for upload."""
        pointer = phone_pointer(tel)
        path = self.path / "phone" / "new" / shard(pointer) / pointer
        atomic_write(path, address_hex(new_address), durable=False)
        if queue_meta:
            _link(self.path / "phone" / "meta" / pointer, path)
        return path

    def phone_address(self, tel: str, new: bool = False) -> str | None:
        """ADDR stored for the phone ``tel`` (old address, or the new one if ``new``), or None."""
        pointer = phone_pointer(tel)
        path = self.path / "phone" / ("new" if new else "") / shard(pointer) / pointer
        try:
            return address_hex(path.read_text().strip())
        except FileNotFoundError:
            return None
        except Exception as e:
            raise DatadirError(f"corrupt phone entry {path}: {e}") from None

    def iter_queue(self, kind: str) -> Iterator[Path]:
        """Upload queue links (``person`` or ``phone``), sorted; unlink each one once uploaded."""
        folder = self.path / QUEUES[kind]
        if folder.is_dir():
            yield from sorted(Path(e.path) for e in os.scandir(folder) if not e.name.startswith("."))

    def balances(self, skipped: list | None = None) -> AddressTable:
        """Opening balances (smallest unit) by old address, from balances.csv.

        A corrupt line raises DatadirError, or, when a ``skipped`` list is given, is appended to it
        and left out of the table (that user then has no balance to pay)."""
        table = {}
        for key, row, path, n in self._rows("balances.csv", 2, skipped):
            try:
                table[key] = _amount(path, n, row)
            except DatadirError as e:
                if skipped is None:
                    raise
                skipped.append(e)
        return AddressTable(table)

    def tags(self) -> AddressTable:
        """Tags (a tuple) by old address, from tags.csv; equal tuples are shared."""
        shared = {}
        return AddressTable({key: shared.setdefault(tuple(row[1:]), tuple(row[1:]))
                             for key, row, _, _ in self._rows("tags.csv", 1)})

    def journal(self, name: str) -> Journal:
        """The resume journal ``journal/<name>.log`` (not opened yet)."""
        return Journal(self.path / "journal" / f"{name}.log")

    def write_txs(self, txs):
        """Keep signed transactions (``.hash``, ``.raw`` bytes) as ``txs/<hash>``, a record of what was sent.

        Not synced: the import journals carry what a resume needs, with one fsync per batch."""
        for tx in txs:
            atomic_write(self.path / "txs" / tx.hash.lower(), "0x" + bytes(tx.raw).hex(), durable=False)

    def read_tx(self, tx_hash: str) -> bytes | None:
        """The raw bytes of a kept transaction, or None."""
        path = self.path / "txs" / tx_hash.lower()
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            return None
        try:
            return bytes.fromhex(text[2:] if text.startswith("0x") else text)
        except ValueError:
            raise DatadirError(f"corrupt transaction file {path}: not hex") from None

    def _rows(self, name, min_columns, skipped: list | None = None):
        path = self.path / name
        try:
            with open(path, newline="") as f:
                for n, row in enumerate(csv.reader(f), 1):
                    try:
                        yield _parse_row(path, n, row, min_columns)
                    except DatadirError as e:
                        if skipped is None:
                            raise
                        skipped.append(e)
        except FileNotFoundError:
            raise DatadirError(f"{path} is missing: generate the datadir again with --force") from None


class Generation:
    """A generation being written into ``.partial``; ``commit`` moves it into place.

    Files in the staging area are written plainly (no per-file rename or fsync): none of them is
    visible in the layout until ``commit`` has synced them, swapped them in and written the
    ``.complete`` marker last. Leaving the ``with`` block on an error removes the staging area and
    keeps the previous generation untouched.
    """

    def __init__(self, datadir: Datadir, staging: Path):
        self.datadir = datadir
        self.staging = staging
        self.count = 0
        self._csv = {}

    def __enter__(self):
        for tree in ("old", "phone"):
            (self.staging / tree).mkdir()
        for name in ("balances.csv", "tags.csv"):
            self._csv[name] = open(self.staging / name, "w", newline="", buffering=1 << 16)
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is not None:
            self.abort()
        return False

    def add(self, user):
        """Write one GeneratedUser: its record, its phone entry and its CSV rows."""
        person = user.person
        address = person.old_address()
        name = address[2:].upper()
        pointer = phone_pointer(person.tel)
        try:
            _write_sharded(f"{self.staging}/old", name, f"{name}.json",
                           json.dumps(person.serialize(), separators=(",", ":")).encode())
            _write_sharded(f"{self.staging}/phone", pointer, pointer, name.encode())
            self._csv["balances.csv"].write(f"{address},{user.balance}\n")
            self._csv["tags.csv"].write(",".join((address, *user.tags)) + "\n")
        except OSError as e:
            raise DatadirError(f"cannot write in {self.staging}: {e.strerror}") from None
        self.count += 1

    def commit(self, arguments: dict):
        """Sync, swap the staged files in (removing stale import results) and write the marker."""
        for f in self._csv.values():
            f.close()
        os.sync()
        root = self.datadir.path
        _remove(root / MARKER)
        for name in GENERATED + DERIVED:
            _remove(root / name)
        for name in GENERATED:
            os.rename(self.staging / name, root / name)
        self.staging.rmdir()
        atomic_write(root / MARKER, json.dumps(arguments, sort_keys=True, indent=1) + "\n")
        logger.info("committed %d users to %s", self.count, root)

    def abort(self):
        """Drop the staging area; the datadir keeps what it held before."""
        for f in self._csv.values():
            f.close()
        _remove(self.staging)


def atomic_write(path, data, mode: int = 0o644, durable: bool = True):
    """Replace ``path`` as a whole: write a temp file in the same folder, then rename it.

    Readers see the old file or the new one, never half of one. ``durable`` also fsyncs the file
    and its folder, so the new file survives a power cut. The temp file has ``mode`` from the start
    (keyfiles: 0o600).
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    data = data.encode() if isinstance(data, str) else data
    fd = _open_making_folders(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(path.parent)


def _fsync_dir(path: Path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_sharded(root: str, key: str, name: str, data: bytes):
    """Write ``root/XX/YY/name`` (XX/YY from ``key``), making the folders only when missing."""
    path = Path(f"{root}/{key[0:2]}/{key[2:4]}/{name}")
    fd = _open_making_folders(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _open_making_folders(path: Path, flags: int, mode: int) -> int:
    """os.open, making the parent folders only when they are missing (one syscall when they exist)."""
    try:
        return os.open(path, flags, mode)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, flags, mode)


def _link(link: Path, target: Path):
    relative = os.path.relpath(target, link.parent)
    try:
        try:
            os.symlink(relative, link)
        except FileNotFoundError:
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(relative, link)
    except FileExistsError:
        if os.readlink(link) != relative:
            link.unlink()
            os.symlink(relative, link)


def _remove(path: Path):
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _walk_sharded(root: Path, suffix: str) -> Iterator[Path]:
    if not root.is_dir():
        return
    for xx in sorted(e.name for e in os.scandir(root) if e.is_dir() and len(e.name) == 2):
        for yy in sorted(e.name for e in os.scandir(root / xx) if e.is_dir()):
            folder = root / xx / yy
            for name in sorted(e.name for e in os.scandir(folder) if e.name.endswith(suffix)):
                yield folder / name


def _parse_row(path, n, row, min_columns):
    if len(row) < min_columns:
        raise DatadirError(f"{path} line {n}: expected {min_columns}+ columns, got {row!r}")
    try:
        key = address_bytes(row[0])
    except Exception:
        raise DatadirError(f"{path} line {n}: not an address: {row[0]!r}") from None
    return key, row, path, n


def _amount(path, n, row) -> int:
    try:
        amount = int(row[1])
    except ValueError:
        raise DatadirError(f"{path} line {n}: amount {row[1]!r} is not a whole number") from None
    if amount < 0:
        raise DatadirError(f"{path} line {n}: amount {amount} is negative")
    return amount
