"""USSD import (the ``cic_ussd`` path): each user dials cic-ussd, which has cic-eth create the account.

Per batch of users, all at once on a thread pool:

1. a fresh session dials ``text=''``. A post-registration answer (``ussd_client.registered``) means
   the phone's account exists or is pending: nothing more is dialled for it. The language menu
   means the phone is unknown;
2. the unknown phones are journalled as ``requested`` (one fsync for the batch), then each picks a
   language in the same session, which must answer END. With ``json_body`` (2021 cic-ussd) there is
   no menu: the first dial (``text=<service code>``) creates, so it is journalled before that dial;
3. the new address is learnt from the phone pointer cic-ussd writes to cic-meta, polled for every
   waiting user together with growing delays until it appears or ``timeout`` has passed.

A phone journalled as ``requested`` never picks a language again (unless ``redial``), even when
the service offers the menu again: the 2022 server does that until cic-eth's callback has come.
A pick that never reached the service (unreachable, or refused with a 4xx) is journalled
``unsent`` and may be dialled again. Found addresses are written as every import writes them:
``new/`` (queued for the person upload) and ``phone/new/`` (not queued: the pointer exists).
"""
import heapq
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .datadir import address_hex
from .errors import SeedError, ServiceUnavailable
from .meta_client import MetaRequestError
from .pointers import phone_pointer
from .ussd_client import UssdRequestError, classify, new_session

log = logging.getLogger(__name__)

LANGUAGE = "1"  # English, the first entry of cic-ussd's language menu
MAX_LISTED = 20


class UssdImporter:
    """Imports Persons through a ``UssdClient`` and a ``MetaClient``; ``run`` returns when each is
    done or given up (``failures``: (person, reason))."""

    def __init__(self, client, meta, datadir, journal, chain_spec, batch_size=100, timeout=60.0,
                 batch_delay=0.0, redial=False, progress=None):
        self.client = client
        self.meta = meta
        self.datadir = datadir
        self.journal = journal
        self.chain_spec = chain_spec
        self.batch_size = batch_size
        self.timeout = timeout
        self.batch_delay = batch_delay
        self.redial = redial
        self.progress = progress
        self.requested = set()  # old ADDR: a language choice (or 2021 dial) was sent
        self.done = set()  # old ADDR
        self.failures = []
        self.offered_again = set()  # old ADDR: requested earlier, but the service offered the menu again
        self.stopped = None  # why dialling stopped early (the service went away), else None
        self._finished = []  # done records not journalled yet
        self._lock = threading.Lock()

    def resume(self):
        """Read the journal: who was requested, who is done."""
        for kind, old, *_ in self.journal.records():
            if kind == "requested":
                self.requested.add(old)
            elif kind == "unsent":
                self.requested.discard(old)
            elif kind == "done":
                self.done.add(old)

    def run(self, people):
        """Import every Person of ``people`` not done yet."""
        resolver = PointerResolver(self.meta, self.timeout, self._found, self._fail)
        workers = min(32, self.batch_size)
        with ThreadPoolExecutor(workers, thread_name_prefix="ussd") as pool, resolver:
            batch = []
            for person in people:
                if address_hex(person.old_address()) in self.done:
                    continue
                batch.append(person)
                if len(batch) >= self.batch_size:
                    self._batch(pool, resolver, batch)
                    batch = []
                    if self.stopped:
                        break
            if batch and not self.stopped:
                self._batch(pool, resolver, batch)
            while resolver.waiting():
                resolver.wait_below(1, timeout=0.5)
                self._flush()
        self._flush()

    def _batch(self, pool, resolver, batch):
        resolver.wait_below(4 * self.batch_size)
        dial = self._dial_legacy if self.client.json_body else self._dial_menu
        resolver.add(dial(pool, batch))
        self._flush()
        if self.batch_delay:
            time.sleep(self.batch_delay)

    def _dial_menu(self, pool, batch):
        """The 2022 flow: a ``text=''`` dial each, then a language choice for the unknown phones."""
        sessions = [new_session() for _ in batch]
        answers = list(pool.map(lambda p, s: _try(self.client.dial, p.tel, s, ""), batch, sessions))
        if all(isinstance(a, ServiceUnavailable) for a in answers):
            self.stopped = str(answers[0])  # nobody can get through: don't spend the retries on everyone
        ready, choose, fresh = [], [], []
        for person, session, answer in zip(batch, sessions, answers):
            old = address_hex(person.old_address())
            kind = answer if isinstance(answer, SeedError) else classify(answer)
            if isinstance(kind, SeedError):
                self._fail(person, str(kind))
            elif kind == "registered" or (kind == "menu" and old in self.requested and not self.redial):
                ready.append(person)
                if old not in self.requested:
                    fresh.append(("requested", old))  # exists: never choose for it
                    self.requested.add(old)
                elif kind == "menu":
                    self.offered_again.add(old)
            elif kind == "menu":
                choose.append((person, session))
            else:
                self._fail(person, f"unexpected answer to the first dial: {answer[:60]!r}")
        fresh += [("requested", address_hex(p.old_address())) for p, _ in choose if
                  address_hex(p.old_address()) not in self.requested]
        self.journal.append(fresh)  # on disk before any choice is sent
        self.requested.update(old for _, old in fresh)
        answers = list(pool.map(lambda item: _try(self.client.dial, item[0].tel, item[1], LANGUAGE), choose))
        for (person, _), answer in zip(choose, answers):
            if self._accepted(person, answer, "the language choice"):
                ready.append(person)
        return ready

    def _dial_legacy(self, pool, batch):
        """The 2021 flow: one JSON dial with ``text=<service code>`` creates an unknown phone's account."""
        ready, dial = [], []
        for person in batch:
            old = address_hex(person.old_address())
            (ready if old in self.requested and not self.redial else dial).append(person)
        fresh = [("requested", address_hex(p.old_address())) for p in dial]
        self.journal.append(fresh)
        self.requested.update(old for _, old in fresh)
        code = self.client.service_code
        answers = list(pool.map(lambda p: _try(self.client.dial, p.tel, new_session(), code), dial))
        if answers and all(isinstance(a, ServiceUnavailable) for a in answers):
            self.stopped = str(answers[0])
        for person, answer in zip(dial, answers):
            if isinstance(answer, str) and classify(answer) == "registered":
                ready.append(person)
            elif self._accepted(person, answer, "the first dial"):
                ready.append(person)
        return ready

    def _accepted(self, person, answer, what) -> bool:
        """True for an END answer; otherwise the user fails, journalled ``unsent`` when nothing arrived."""
        if isinstance(answer, str) and answer.startswith("END"):
            return True
        old = address_hex(person.old_address())
        undelivered = isinstance(answer, ServiceUnavailable) or (
            isinstance(answer, UssdRequestError) and (answer.status or 500) < 500)
        if undelivered:
            self.journal.append([("unsent", old)])
            self.requested.discard(old)
        reason = str(answer) if isinstance(answer, SeedError) else f"answer to {what}: {answer[:60]!r}"
        self._fail(person, reason)
        return False

    def _found(self, person, address):
        """Called by the resolver: write new/ and phone/new/ for the user."""
        stored = person.add_identity(self.chain_spec, address)
        self.datadir.write_new(person, stored)
        self.datadir.write_phone(person.tel, stored, queue_meta=False)
        with self._lock:
            self._finished.append(("done", address_hex(person.old_address()), stored))
        if self.progress:
            self.progress.update(1)

    def _fail(self, person, reason):
        if address_hex(person.old_address()) in self.offered_again:
            reason += ("; its language choice was sent on an earlier run, yet the service offers it the menu "
                       "again: if the service lost it, run again with --redial")
        with self._lock:
            self.failures.append((person, reason))

    def _flush(self):
        with self._lock:
            records, self._finished = self._finished, []
        self.journal.append(records)
        self.done.update(old for _, old, _ in records)

    def problems(self) -> list:
        """One line per user not imported (the first MAX_LISTED), then how many more."""
        lines = [f"user {address_hex(p.old_address())} ({p.tel}): {reason}" for p, reason in
                 self.failures[:MAX_LISTED]]
        if len(self.failures) > MAX_LISTED:
            lines.append(f"... and {len(self.failures) - MAX_LISTED} more users")
        if self.stopped:
            lines.append(f"stopped dialling, the users after these were not dialled: {self.stopped}")
        return lines


def _try(fn, *args):
    try:
        return fn(*args)
    except SeedError as e:
        return e


class PointerResolver:
    """Polls phone pointers in cic-meta on its own thread: every due user in one parallel round, each
    again after a growing delay (0.25 s to 2 s) until found (``found(person, address)``) or past its
    ``timeout`` (``fail(person, reason)``). A context manager; ``add`` hands it users."""

    def __init__(self, meta, timeout, found, fail, first_delay=0.25, max_delay=2.0):
        self.meta = meta
        self.timeout = timeout
        self.found = found
        self.fail = fail
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._heap = []  # (due, n, person, deadline, delay)
        self._busy = 0
        self._count = 0
        self._closed = False
        self._cond = threading.Condition()
        self._thread = None
        self._meta_error = None

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, name="ussd-resolver", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def add(self, people):
        """Start polling the phone pointers of ``people`` (just dialled)."""
        now = time.monotonic()
        with self._cond:
            for person in people:
                self._count += 1
                heapq.heappush(self._heap, (now + self.first_delay, self._count, person, now + self.timeout,
                                            self.first_delay))
            self._cond.notify_all()

    def waiting(self) -> int:
        """Users still polled."""
        with self._cond:
            return len(self._heap) + self._busy

    def wait_below(self, limit, timeout=None):
        """Block until fewer than ``limit`` users wait (or ``timeout`` passes)."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._heap) + self._busy < limit, timeout)

    def _run(self):
        while True:
            with self._cond:
                while not self._closed and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                if self._closed:
                    return
                now = time.monotonic()
                due = []
                while self._heap and self._heap[0][0] <= now and len(due) < 256:
                    due.append(heapq.heappop(self._heap))
                self._busy = len(due)
            later = self._round(due)
            with self._cond:
                for entry in later:
                    heapq.heappush(self._heap, entry)
                self._busy = 0
                self._cond.notify_all()

    def _round(self, due) -> list:
        """Look every due user up once; returns the entries to poll again."""
        try:
            answers = {p.tel: (value, error) for p, value, error in self.meta.run_many(self._get, [e[2] for e in due])}
            self._meta_error = None
        except ServiceUnavailable as e:
            if self._meta_error is None:
                log.warning("%s", e)
            self._meta_error = e
            answers = {}
        later, now = [], time.monotonic()
        for due_at, n, person, deadline, delay in due:
            value, error = answers.get(person.tel, (None, self._meta_error))
            if isinstance(error, MetaRequestError):
                self.fail(person, str(error))
            elif value is not None:
                try:
                    self.found(person, _address(value))
                except SeedError as e:
                    self.fail(person, f"its phone pointer {phone_pointer(person.tel)} holds {value!r}: {e}")
            elif now >= deadline:
                why = f"cic-meta is unreachable ({error})" if error else "no phone pointer appeared"
                self.fail(person, f"{why} within {self.timeout:g} s: is the cic-ussd server creating accounts "
                                  "(its cic-eth worker running, cic-meta reachable)? a re-run waits again")
            else:
                delay = min(delay * 1.6, self.max_delay)
                later.append((min(now + delay, deadline), n, person, deadline, delay))
        return later

    def _get(self, person):
        return self.meta.get(phone_pointer(person.tel), what="phone pointer")


def _address(value):
    """The address a phone pointer holds (any 0x/case form, cic-ussd's JSON string)."""
    from .person import checksum_address

    if not isinstance(value, str):
        raise SeedError(f"not an address but a {type(value).__name__}")
    return checksum_address(value.strip().strip('"'))
