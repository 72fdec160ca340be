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
import os
from pathlib import Path
from typing import Iterator

from .errors import DatadirError
from .files import atomic_write, link_relative, remove, shard, walk_sharded
from .generation import DERIVED, GENERATED, MARKER, STAGING, Generation
from .person import Person, PersonFormatError
from .pointers import address_bytes, phone_pointer
from .progress import Journal

IMPORTED_BY = ".import"
QUEUES = {"person": "meta", "phone": os.path.join("phone", "meta")}


def address_hex(address) -> str:
    """ADDR: 40 upper-case hex digits without 0x."""
    return address_bytes(address).hex().upper()


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

    def create(self, force: bool = False, reset: bool = False) -> Generation:
        """Check, empty the datadir if ``reset``, and open a staging area for a new generation."""
        self.check(force, reset)
        if reset and self.path.is_dir():
            for entry in os.scandir(self.path):
                remove(Path(entry.path))
        self.path.mkdir(parents=True, exist_ok=True)
        staging = self.path / STAGING
        remove(staging)
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
        for path in walk_sharded(self.path / "old", ".json"):
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
        link_relative(self.path / "meta" / path.name, path)

    def write_phone(self, tel: str, new_address, queue_meta: bool = True) -> Path:
        """Store the new address of the phone ``tel``; queue its phone pointer for upload."""
        pointer = phone_pointer(tel)
        path = self.path / "phone" / "new" / shard(pointer) / pointer
        atomic_write(path, address_hex(new_address), durable=False)
        if queue_meta:
            link_relative(self.path / "phone" / "meta" / pointer, path)
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
