"""Staging a new generation of a datadir (``Datadir.create``) and swapping it into place."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DatadirError
from .files import atomic_write, remove, write_sharded
from .pointers import phone_pointer

if TYPE_CHECKING:
    from .datadir import Datadir

logger = logging.getLogger(__name__)

MARKER = ".complete"
STAGING = ".partial"
GENERATED = ("old", "phone", "balances.csv", "tags.csv")
DERIVED = ("new", "meta", "txs", "journal", ".import")  # import results: stale once the generation changes


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
            write_sharded(f"{self.staging}/old", name, f"{name}.json",
                          json.dumps(person.serialize(), separators=(",", ":")).encode())
            write_sharded(f"{self.staging}/phone", pointer, pointer, name.encode())
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
        remove(root / MARKER)
        for name in GENERATED + DERIVED:
            remove(root / name)
        for name in GENERATED:
            os.rename(self.staging / name, root / name)
        self.staging.rmdir()
        atomic_write(root / MARKER, json.dumps(arguments, sort_keys=True, indent=1) + "\n")
        logger.info("committed %d users to %s", self.count, root)

    def abort(self):
        """Drop the staging area; the datadir keeps what it held before."""
        for f in self._csv.values():
            f.close()
        remove(self.staging)
