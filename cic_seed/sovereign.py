"""Sovereign-wallet import (the ``eth`` path): every user gets a key of their own.

Per user, in batches: a new key (v3 keyfile in ``keystore/``) and the ``new/`` record are
written and journalled as ``planned`` *before* any transaction, so a re-run reuses the
same address; then the importer wallet sends ``add(address)`` to the AccountsIndex and a
little gas, and the new account calls the faucet's ``giveTo`` itself, as a custodial
account would. What is already on chain is read back first, so nothing is sent twice:
registered accounts are not added again, funded ones get no more gas, and a used faucet
is not called again. ``done`` is journalled when all three are mined.
"""
import logging
import os
from dataclasses import dataclass

from .contracts import ACCOUNTS_INDEX, FAUCET, function
from .datadir import address_hex
from .errors import ChainError
from .signer import Signer, load_keyfile, write_keyfile
from .transactions import TX_GAS, WalletNonces, send_all, succeeded, wait_receipts

log = logging.getLogger(__name__)


@dataclass
class Planned:
    person: object
    signer: Signer

    @property
    def address(self):
        return self.signer.address


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
        self.planned = {}  # old ADDR -> new checksum address
        self.done = set()  # old ADDR

    def resume(self):
        for kind, old, *rest in self.journal.records():
            if kind == "planned":
                self.planned[old] = rest[0]
            elif kind == "done":
                self.done.add(old)

    def import_batch(self, people: list):
        """Register, fund and faucet one batch of old-chain Persons."""
        planned = []
        batch = [self._plan(p, planned) for p in people if address_hex(p.old_address()) not in self.done]
        if not batch:
            return
        if planned:
            os.sync()  # keyfiles and new/ records reach the disk before the journal names them
            self.journal.append(planned)
        rpc = self.network.rpc
        registered = self._read(batch, ACCOUNTS_INDEX, "have", self.network.accounts_index)
        unused_faucet = [t == 0 for t in self._read(batch, FAUCET, "nextTime", self.network.faucet)]
        balances = rpc.balances([u.address for u in batch])
        to_add = [u for u, have in zip(batch, registered) if have is not True]
        to_fund = [u for u, wei, unused in zip(batch, balances, unused_faucet) if unused and wei < self.gas_gift // 2]
        self._send_from_wallet(to_add, to_fund)
        self._call_faucet([u for u, unused in zip(batch, unused_faucet) if unused])
        self.journal.append([self._finish(user) for user in batch])

    def _plan(self, person, planned: list) -> Planned:
        old = address_hex(person.old_address())
        known = self.planned.get(old)
        if known:
            keyfile = self.datadir.keystore_dir / f"{address_hex(known)}.json"
            person.add_identity(self.network.chain_spec, known)
            return Planned(person, load_keyfile(keyfile, self.password))
        signer = Signer.generate()
        self.datadir.keystore_dir.mkdir(parents=True, exist_ok=True)
        # not fsynced one by one: the batch is synced at once before the journal names it
        write_keyfile(self.datadir.keystore_dir / f"{address_hex(signer.address)}.json", signer, self.password,
                      self.kdf_iterations, durable=False)
        person.add_identity(self.network.chain_spec, signer.address)
        self.datadir.write_new(person, signer.address, queue_meta=False)
        planned.append(("planned", old, signer.address))
        self.planned[old] = signer.address
        return Planned(person, signer)

    def _read(self, batch, contract, name, to):
        fn = function(contract, name)
        return [fn.decode(a) for a in self.network.rpc.eth_calls([(to, fn.hexdata(u.address)) for u in batch])]

    def _send_from_wallet(self, to_add, to_fund):
        if not to_add and not to_fund:
            return
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
        receipts = wait_receipts(self.network.rpc, [tx.hash for tx in txs])
        failed = [tx.hash for tx in txs if not succeeded(receipts[tx.hash])]
        if failed:
            recheck = self._read(to_add, ACCOUNTS_INDEX, "have", self.network.accounts_index)
            if not all(have is True for have in recheck):
                raise ChainError(f"{len(failed)} registration or gas transactions reverted (first {failed[0]}): "
                                 f"is {self.wallet.address} a writer on the AccountsIndex "
                                 f"{self.network.accounts_index}?")

    def _call_faucet(self, users):
        if not users:
            return
        give_to = function(FAUCET, "giveTo")
        rpc = self.network.rpc
        nonces = [int(n, 16) for n in rpc.batch([("eth_getTransactionCount", [u.address, "pending"]) for u in users])]
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
