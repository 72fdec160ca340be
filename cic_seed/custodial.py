"""Custodial import (the ``cic_eth`` path): cic-eth creates and registers every account.

Each user's ``create_account`` chain is sent with its task ids chosen in advance and journalled
as ``requested`` first; the new address arrives on a redis callback matched by root id. Up to
``window`` creations are in flight at once. A user whose callback does not come within
``timeout`` is reported with its root task id and the likely cause, and the run goes on.
A re-run first asks the result backend what the journalled ``create`` tasks returned, so an
account cic-eth already made is taken, not made again; only users with no trace are requested anew
(with the same task ids, which the devnet engine deduplicates).
"""
import logging
import time
import uuid
from dataclasses import dataclass

from .datadir import address_hex

log = logging.getLogger(__name__)


@dataclass
class Request:
    person: object
    root_id: str
    create_id: str
    sent_at: float = 0.0


class CustodialImporter:
    """Creates accounts through a cic-eth client (``celery_client.CicEthApi``) and a callback listener."""

    def __init__(self, api, listener, datadir, journal, chain_spec, window=100, timeout=60.0, progress=None):
        self.api = api
        self.listener = listener
        self.datadir = datadir
        self.journal = journal
        self.chain_spec = chain_spec
        self.window = window
        self.timeout = timeout
        self.progress = progress
        self.requested = {}  # old ADDR -> (root id, create id)
        self.done = set()    # old ADDR
        self.missing = []    # Requests that timed out
        self.failed = []     # (Request, reply) with an error status

    def resume(self):
        for kind, old, *rest in self.journal.records():
            if kind == "requested":
                self.requested[old] = (rest[0], rest[1])
            elif kind == "done":
                self.done.add(old)

    def run(self, people):
        """Import every Person of ``people`` not done yet; returns when each is done or given up."""
        in_flight = {}
        finished = []
        pending = iter(p for p in people if address_hex(p.old_address()) not in self.done)
        exhausted = False
        while not exhausted or in_flight:
            if not exhausted and len(in_flight) < self.window:
                batch = [p for _, p in zip(range(self.window - len(in_flight)), pending)]
                exhausted = not batch
                for request in self._send(batch):
                    in_flight[request.root_id] = request
            for reply in self.listener.poll(timeout=0.05 if in_flight else 0):
                request = in_flight.pop(reply.root_id, None)
                if request is None:
                    continue
                self.listener.pop(reply.root_id)
                if reply.ok and reply.address:
                    finished.append(self._finish(request.person, reply.address))
                else:
                    self.failed.append((request, reply))
            now = time.monotonic()
            for root_id, request in list(in_flight.items()):
                if now - request.sent_at > self.timeout:
                    self.missing.append(in_flight.pop(root_id))
            if len(finished) >= 100 or (finished and not in_flight):
                self.journal.append(finished)
                finished = []
        self.journal.append(finished)

    def _send(self, batch):
        """Journal, then send, one create_account chain per person; recover journalled ones first."""
        requests, fresh = [], []
        for person in batch:
            old = address_hex(person.old_address())
            known = self.requested.get(old)
            if known:
                address = self.api.created_address(known[1])
                if address:  # cic-eth made it while we were not listening
                    self.journal.append([self._finish(person, address)])
                    continue
                requests.append(Request(person, *known))
            else:
                request = Request(person, str(uuid.uuid4()), str(uuid.uuid4()))
                fresh.append(("requested", old, request.root_id, request.create_id))
                self.requested[old] = (request.root_id, request.create_id)
                requests.append(request)
        self.journal.append(fresh)  # on disk before cic-eth hears of them
        for request in requests:
            self.api.create_account(self.chain_spec, self.listener.param, register=True,
                                    root_id=request.root_id, create_id=request.create_id)
            request.sent_at = time.monotonic()
        return requests

    def _finish(self, person, address) -> tuple:
        old = address_hex(person.old_address())
        stored = person.add_identity(self.chain_spec, address)
        self.datadir.write_new(person, stored)
        self.datadir.write_phone(person.tel, stored)
        self.done.add(old)
        if self.progress:
            self.progress.update(1)
        return ("done", old, stored)

    def problems(self, queue: str, callback_host: str) -> list:
        """One line per user that was not imported, with the root task id and the likely cause."""
        lines = [f"user {address_hex(r.person.old_address())} ({r.person.tel}): no callback for root task "
                 f"{r.root_id} within {self.timeout:g} s: is a cic-eth worker consuming queue {queue!r}, and can it "
                 f"reach redis at {callback_host} (--redis-host-callback)?" for r in self.missing]
        lines += [f"user {address_hex(r.person.old_address())}: cic-eth answered status {reply.status} "
                  f"({reply.result!r}) for root task {r.root_id}" for r, reply in self.failed]
        return lines
