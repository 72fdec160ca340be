"""Upload the metadata the import scripts queue in a datadir to cic-meta.

Person documents: each ``meta/<ADDR>.json`` link (to the ``new/`` record of the imported
user) is written at ``person_pointer(ADDR)``, and the user's tags (``tags.csv``, by old
address) as ``{"tags": [...]}`` at ``custom_pointer(ADDR)``. Phone pointers: each
``phone/meta/<PTR>`` link gives the new ADDR of a phone; it is written as the JSON string
``"ADDR"`` at PTR unless the pointer already exists (users imported through cic_ussd have
theirs already): it is never overwritten.

An entry is journalled (``journal/meta_person.log``: ``ADDR fingerprint``, or
``journal/meta_phone.log``: ``PTR outcome``) and its queue link removed only after the
server accepted every write of that user. A record already journalled with the same
fingerprint (sha256 of the record and its tags) is not written again, so re-runs are cheap
and safe. Per-user refusals (4xx) are collected and reported; an unreachable server stops
the run (ServiceUnavailable) after journalling what was done.
"""
import hashlib
import json
import logging
import os
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from itertools import islice

from .chainspec import ChainSpec
from .datadir import QUEUES
from .errors import DatadirError
from .meta_client import MetaClient, MetaRequestError
from .person import OLD_CHAIN, Person, PersonFormatError
from .pgp import signer_from_settings
from .pointers import custom_pointer, person_pointer

logger = logging.getLogger(__name__)

RECORDS = {"person": "new", "phone": os.path.join("phone", "new")}  # what --resync walks
FLUSH_EVERY = 256  # journal records per fsync
FLUSH_SECONDS = 1.0
POLL_MIN, POLL_MAX = 0.2, 2.0  # --follow: backoff between scans of an empty queue


@dataclass
class Outcome:
    """What one run did."""

    uploaded: int = 0
    unchanged: int = 0  # already there with the same content: not written again
    skipped: int = 0  # phone pointers that already held another value (left alone)
    failed: list = field(default_factory=list)  # "who: why" lines
    total_done: int = 0  # entries journalled over all runs
    elapsed: float = 0.0  # seconds

    @property
    def processed(self) -> int:
        return self.uploaded + self.unchanged + self.skipped

    def timing(self, unit="user") -> str:
        """``1000 users in 2.0 s (500 users/s)``."""
        rate = self.processed / self.elapsed if self.elapsed > 0 else 0.0
        return f"{self.processed} {unit}s in {self.elapsed:.1f} s ({rate:.0f} {unit}s/s)"


class _Queue:
    """One upload queue of a datadir with its journal: the shared loop of both importers."""

    def __init__(self, client, datadir, kind, journal_name, progress=None, resync=False):
        self.client = client
        self.datadir = datadir
        self.kind = kind
        self.resync = resync
        self.journal = datadir.journal(journal_name)
        self.progress = progress
        self.done = {}
        self.failed_names = set()  # queue entries refused in this run: not retried until the next run
        self.outcome = Outcome()

    def job(self, link):
        """Upload one entry (runs in a worker thread); returns (key, journal value, outcome name)."""
        raise NotImplementedError

    def resume(self) -> int:
        """Read the journal of earlier runs; returns how many entries are done."""
        self.done = {record[0]: record[1] for record in self.journal.records() if len(record) >= 2}
        return len(self.done)

    def run(self, limit=None, follow=False, expected=None):
        """Drain the queue (``limit`` entries at most); with ``follow`` keep scanning until
        ``expected`` entries are journalled in total (or ``limit`` is reached). Call
        ``resume()`` first."""
        pause = POLL_MIN
        try:
            while limit is None or self._handled() < limit:
                before = self._handled()
                left = None if limit is None else limit - self._handled()
                queue = (link for link in self.entries() if link.name not in self.failed_names)
                self._drain(islice(queue, left))
                complete = expected is not None and len(self.done) + len(self.failed_names) >= expected
                if not follow or complete:
                    break
                pause = POLL_MIN if self._handled() > before else min(pause * 2, POLL_MAX)
                time.sleep(pause)
        finally:
            self.journal.close()
        self.outcome.total_done = len(self.done)
        return self.outcome

    def entries(self):
        """The queue links, or with ``resync`` every imported record (``new/``, ``phone/new/``)."""
        if not self.resync:
            return self.datadir.iter_queue(self.kind)
        records = self.datadir.path / RECORDS[self.kind]
        return (path for path in sorted(records.glob("*/*/*")) if not path.name.startswith("."))

    def _handled(self):
        return self.outcome.processed + len(self.failed_names)

    def _drain(self, links):
        pending, last_flush = [], time.monotonic()
        try:
            for link, result, error in self.client.run_many(self._safe_job, links):
                if error is not None or result[2] == "failed":
                    self.failed_names.add(link.name)
                    self.outcome.failed.append(str(error) if error is not None else result[1])
                    continue
                key, value, outcome = result
                pending.append((link, key, value, outcome))
                if len(pending) >= FLUSH_EVERY or time.monotonic() - last_flush > FLUSH_SECONDS:
                    self._flush(pending)
                    pending, last_flush = [], time.monotonic()
        finally:
            self._flush(pending)

    def _safe_job(self, link):
        try:
            return self.job(link)
        except MetaRequestError as e:
            raise MetaRequestError(f"{self.kind} {link.stem}: {e}", e.status) from None
        except DatadirError as e:
            return link.stem, f"{self.kind} {link.stem}: {e}", "failed"

    def _flush(self, pending):
        """Journal (fsync), then remove the queue links: an entry is done only once recorded."""
        self.journal.append([(key, value) for _, key, value, _ in pending if self.done.get(key) != value])
        queue = self.datadir.path / QUEUES[self.kind]
        for link, key, value, outcome in pending:
            self.done[key] = value
            (queue / link.name).unlink(missing_ok=True)
            if outcome == "uploaded":
                self.outcome.uploaded += 1
            elif outcome in ("unchanged", "present"):
                self.outcome.unchanged += 1
            else:
                self.outcome.skipped += 1
        if self.progress is not None and pending:
            self.progress.update(len(pending))


class PersonUploader(_Queue):
    """Person documents and custom tags from ``meta/``."""

    def __init__(self, client, datadir, progress=None, resync=False):
        super().__init__(client, datadir, "person", "meta_person", progress, resync)
        self.tags = None
        self.merge_tags = False
        self.old_chain = OLD_CHAIN  # the generation's old chain, whose address keys tags.csv

    def resume(self) -> int:
        self.tags = self.datadir.tags()
        # cic-ussd writes its own tags (ussd, individual) for the accounts it creates: keep them
        self.merge_tags = self.datadir.journal("cic_ussd_import_users").path.exists()
        return super().resume()

    def _custom(self, tags, held) -> dict:
        """The custom document to write; with ``merge_tags`` the tags cic-meta holds (``held``) come first."""
        if not self.merge_tags:
            return {"tags": list(tags)}
        held = held.get("tags") if isinstance(held, dict) else None
        return {"tags": list(dict.fromkeys([*(held if isinstance(held, list) else []), *tags]))}

    def job(self, link):
        address = link.name.split(".")[0]
        try:
            raw = link.read_bytes()
        except OSError as e:
            raise DatadirError(f"cannot read the queued record {link}: {e.strerror}") from None
        try:
            record = json.loads(raw)
            old_address = Person.deserialize(record).old_address(self.old_chain)
        except (ValueError, PersonFormatError) as e:
            raise DatadirError(f"corrupt person record {link}: {e}") from None
        tags = self.tags.get(old_address) or ()
        fingerprint = hashlib.sha256(raw + b"\n" + ",".join(tags).encode()).hexdigest()[:24]
        if not self.resync and self.done.get(address) == fingerprint:
            return address, fingerprint, "unchanged"
        read_custom = tags and (self.resync or self.merge_tags)
        held = self.client.get(custom_pointer(address), what="custom tags") if read_custom else None
        custom = self._custom(tags, held)
        if self.resync and (not tags or held == custom) and \
                self.client.get(person_pointer(address), what="person") == record:
            return address, fingerprint, "unchanged"
        self.client.put(person_pointer(address), record, what="person")
        if tags:
            self.client.put(custom_pointer(address), custom, what="custom tags")
        return address, fingerprint, "uploaded"


class PhoneUploader(_Queue):
    """Phone pointers from ``phone/meta/``; an existing pointer is never overwritten."""

    def __init__(self, client, datadir, progress=None, resync=False):
        super().__init__(client, datadir, "phone", "meta_phone", progress, resync)

    def job(self, link):
        pointer = link.name
        try:
            address = normalize_address(link.read_text())
        except OSError as e:
            raise DatadirError(f"cannot read the queued phone entry {link}: {e.strerror}") from None
        if len(address) != 40 or not all(c in "0123456789ABCDEF" for c in address):
            raise DatadirError(f"corrupt phone entry {link}: {address[:50]!r} is not an address")
        existing = self.client.get(pointer, what="phone pointer")
        if existing is not None:
            same = isinstance(existing, str) and normalize_address(existing) == address
            if not same:
                logger.info("phone pointer %s already holds %r: left alone (cic_ussd import?)", pointer, existing)
            return pointer, "present" if same else "kept", "present" if same else "kept"
        self.client.put(pointer, address, what="phone pointer")
        return pointer, "uploaded", "uploaded"


def normalize_address(value: str) -> str:
    """An address as cic-meta may hold it (quotes, 0x, any case) as 40 upper-case hex digits."""
    text = value.strip().strip('"')
    return (text[2:] if text[:2] in ("0x", "0X") else text).upper()


UPLOADERS = {"person": PersonUploader, "phone": PhoneUploader}


def upload(client, datadir, kind, limit=None, follow=False, progress_factory=None, resync=False) -> Outcome:
    """Check the server, then run the ``kind`` uploader ("person" or "phone") over a complete
    datadir. ``progress_factory(total)`` may return a ``Progress`` context to count entries.
    ``resync`` compares every imported record with the server (GET) and writes what differs."""
    marker = datadir.require_complete()
    expected = marker.get("user_count")
    client.check()
    uploader = UPLOADERS[kind](client, datadir, resync=resync)
    if "old_chain" in marker and kind == "person":
        uploader.old_chain = ChainSpec.parse(marker["old_chain"])
    done = uploader.resume()
    if follow:
        total = limit if limit is not None else (expected - done if expected else None)
    else:
        queued = sum(1 for _ in uploader.entries())
        total = queued if limit is None else min(limit, queued)
    started = time.monotonic()
    with ExitStack() as stack:
        if progress_factory is not None:
            uploader.progress = stack.enter_context(progress_factory(total))
        outcome = uploader.run(limit, follow, expected)
    outcome.elapsed = time.monotonic() - started
    return outcome


@contextmanager
def client_from_settings(settings, workers: int = 4):
    """An open MetaClient for META_URL, signing with PGP when PGP_SIGN is on."""
    signer = signer_from_settings(settings)
    with ExitStack() as stack:
        if signer is not None:
            stack.enter_context(signer)
        client = MetaClient(settings.get("META_URL", "http://localhost:63380"), workers=workers, signer=signer)
        yield stack.enter_context(client)


def problems(outcome: Outcome, shown: int = 20) -> list:
    """The failure lines to show (the first ``shown``, then how many more)."""
    lines = outcome.failed[:shown]
    if len(outcome.failed) > shown:
        lines.append(f"... and {len(outcome.failed) - shown} more")
    return lines
