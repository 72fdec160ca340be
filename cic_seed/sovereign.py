"""Sovereign-wallet import (the ``eth`` path): every user gets a key of their own.

Per user, in batches: a new key is made, its v3 keyfile and the ``new/`` record are written,
and the keyfile is journalled as ``planned`` (one fsync per batch) *before* any transaction
names the address, so a re-run reuses the same key even if the keystore file was lost. Then
the importer wallet sends ``add(address)`` to the AccountsIndex and a little gas, and the new
account calls the faucet's ``giveTo`` itself, as a custodial account would. What is on chain
is read back first, so nothing is sent twice: registered accounts are not added again, funded
ones get no more gas, a used faucet is not called again. ``done`` is journalled when all three
are mined.

Batches overlap: while the node mines one batch's wallet transactions, the next batch's keys
and files are made; then the first batch's faucet calls go out.
"""
import json
import logging
from dataclasses import dataclass, field

from .contracts import ACCOUNTS_INDEX, FAUCET, function
from .datadir import address_hex
from .errors import ChainError
from .files import atomic_write
from .signer import Signer, load_keyfile
from .transactions import TX_GAS, WalletNonces, send_all, succeeded, wait_receipts

log = logging.getLogger(__name__)


@dataclass
class Planned:
    person: object
    signer: Signer
    fresh: bool = False  # a key made by this run: nothing on chain can name it yet

    @property
    def address(self):
        return self.signer.address


@dataclass
class Batch:
    users: list
    added: list = field(default_factory=list)     # users whose add(address) this run sent
    wallet_txs: list = field(default_factory=list)
    to_faucet: list = field(default_factory=list)


class SovereignImporter:
    """Registers users with keys of their own; the constructor does no I/O."""

    def __init__(self, network, wallet, datadir, journal, gas_price, gas_gift, password, kdf_iterations,
                 progress=None):
        self.network = network
        self.wallet = wallet
        self.datadir = datadir
        self.journal = journal
        self.gas_price = gas_price
        self.gas_gift = max(gas_gift, 2 * TX_GAS * gas_price)
        self.password = password
        self.kdf_iterations = kdf_iterations
        self.progress = progress
        self.nonces = WalletNonces(network.rpc, wallet.address)
        self.planned = {}  # old ADDR -> (new checksum address, keyfile JSON)
        self.done = set()  # old ADDR

    def resume(self):
        for kind, old, *rest in self.journal.records():
            if kind == "planned":
                self.planned[old] = (rest[0], rest[1] if len(rest) > 1 else None)
            elif kind == "done":
                self.done.add(old)

    def run(self, chunks):
        """Import chunks of old-chain Persons, one batch's mining overlapping the next one's set-up."""
        in_flight = None
        for people in chunks:
            batch = self._start(people)
            self._complete(in_flight)
            in_flight = batch
        self._complete(in_flight)

    def _start(self, people) -> Batch | None:
        """Plan keys, read what the chain already has, send the wallet's transactions (no wait)."""
        planned = []
        users = [self._plan(p, planned) for p in people if address_hex(p.old_address()) not in self.done]
        if not users:
            return None
        self.journal.append(planned)  # the keys are on disk before any transaction names them
        registered, unused_faucet, balances = self._chain_state(users)
        batch = Batch(users)
        batch.added = [u for u, have in zip(users, registered) if have is not True]
        funded = [u for u, wei, unused in zip(users, balances, unused_faucet) if unused and wei < self.gas_gift // 2]
        batch.to_faucet = [u for u, unused in zip(users, unused_faucet) if unused]
        batch.wallet_txs = self._send_from_wallet(batch.added, funded)
        return batch

    def _complete(self, batch: Batch | None):
        """Wait for the wallet's transactions, have the accounts call the faucet, journal them done."""
        if batch is None:
            return
        self._check_wallet_receipts(batch)
        self._call_faucet(batch.to_faucet)
        self.journal.append([self._finish(user) for user in batch.users])

    def _chain_state(self, users):
        """Per user: registered?, faucet unused?, native balance. Read only for keys an earlier run
        planned (it may have sent their transactions); a key made now is known to have nothing."""
        known = [u for u in users if not u.fresh]
        addresses = [u.address for u in known]
        registered = dict(zip(addresses, self._read(known, ACCOUNTS_INDEX, "have", self.network.accounts_index)))
        next_time = dict(zip(addresses, self._read(known, FAUCET, "nextTime", self.network.faucet)))
        balances = dict(zip(addresses, self.network.rpc.balances(addresses)))
        return ([registered.get(u.address, False) for u in users],
                [next_time.get(u.address, 0) == 0 for u in users], [balances.get(u.address, 0) for u in users])

    def _plan(self, person, planned: list) -> Planned:
        old = address_hex(person.old_address())
        known = self.planned.get(old)
        if known:
            return Planned(person, self._restore(person, *known))
        signer = Signer.generate()
        keyfile = json.dumps(signer.keyfile_json(self.password, self.kdf_iterations), separators=(",", ":"))
        atomic_write(self._keyfile_path(signer.address), keyfile, mode=0o600, durable=False)
        person.add_identity(self.network.chain_spec, signer.address)
        self.datadir.write_new(person, signer.address, queue_meta=False)
        planned.append(("planned", old, signer.address, keyfile))
        self.planned[old] = (signer.address, keyfile)
        return Planned(person, signer, fresh=True)

    def _restore(self, person, address, keyfile_json):
        """The key a previous run planned for this user; its keyfile is rewritten if it was lost."""
        path = self._keyfile_path(address)
        if keyfile_json and not path.exists():
            atomic_write(path, keyfile_json, mode=0o600, durable=False)
        person.add_identity(self.network.chain_spec, address)
        if not self.datadir.new_path(address).exists():
            self.datadir.write_new(person, address, queue_meta=False)
        return load_keyfile(path, self.password)

    def _keyfile_path(self, address):
        return self.datadir.keystore_dir / f"{address_hex(address)}.json"

    def _read(self, users, contract, name, to):
        if not users:
            return []
        fn = function(contract, name)
        return [fn.decode(a) for a in self.network.rpc.eth_calls([(to, fn.hexdata(u.address)) for u in users])]

    def _send_from_wallet(self, to_add, to_fund) -> list:
        if not to_add and not to_fund:
            return []
        add = function(ACCOUNTS_INDEX, "add")
        chain_id = self.network.chain_id
        with self.nonces.reserve() as next_nonce:
            txs = [self.wallet.sign(nonce=next_nonce(), gas_price=self.gas_price, gas=TX_GAS,
                                    to=self.network.accounts_index, data=add.data(u.address), chain_id=chain_id)
                   for u in to_add]
            txs += [self.wallet.sign(nonce=next_nonce(), gas_price=self.gas_price, gas=21_000, to=u.address,
                                     value=self.gas_gift, chain_id=chain_id) for u in to_fund]
            self.datadir.write_txs(txs)
            send_all(self.network.rpc, txs, "an importer transaction")
        return txs

    def _check_wallet_receipts(self, batch: Batch):
        if not batch.wallet_txs:
            return
        receipts = wait_receipts(self.network.rpc, [tx.hash for tx in batch.wallet_txs])
        failed = [tx.hash for tx in batch.wallet_txs if not succeeded(receipts[tx.hash])]
        if failed:
            recheck = self._read(batch.added, ACCOUNTS_INDEX, "have", self.network.accounts_index)
            if not all(have is True for have in recheck):
                raise ChainError(f"{len(failed)} registration or gas transactions reverted (first {failed[0]}): "
                                 f"is {self.wallet.address} a writer on the AccountsIndex "
                                 f"{self.network.accounts_index}?")

    def _call_faucet(self, users):
        if not users:
            return
        give_to = function(FAUCET, "giveTo")
        rpc = self.network.rpc
        known = [u.address for u in users if not u.fresh]  # a key made now has sent nothing yet
        counts = dict(zip(known, rpc.batch([("eth_getTransactionCount", [a, "pending"]) for a in known])))
        nonces = [int(counts.get(u.address, "0x0"), 16) for u in users]
        txs = [u.signer.sign(nonce=n, gas_price=self.gas_price, gas=TX_GAS, to=self.network.faucet,
                             data=give_to.data(u.address), chain_id=self.network.chain_id)
               for u, n in zip(users, nonces)]
        send_all(rpc, txs, "a faucet call")
        receipts = wait_receipts(rpc, [tx.hash for tx in txs])
        failed = [(u, tx.hash) for u, tx in zip(users, txs) if not succeeded(receipts[tx.hash])]
        if failed:
            user, tx_hash = failed[0]
            raise ChainError(f"{len(failed)} faucet calls reverted (first {tx_hash} from {user.address}): "
                             f"is the faucet {self.network.faucet} funded?")

    def _finish(self, user: Planned) -> tuple:
        old = address_hex(user.person.old_address())
        self.datadir.queue_person(user.address)
        self.datadir.write_phone(user.person.tel, user.address)
        self.done.add(old)
        if self.progress:
            self.progress.update(1)
        return ("done", old, user.address)
