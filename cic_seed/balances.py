"""Opening balances: pay each registered user their ``balances.csv`` amount exactly once.

Shared by every backend. The chain says who is registered (``syncer``); the datadir says
which old user a new address stands for. A journal records each transfer *before* it is
broadcast (``sent``) and after its receipt (``paid``), and the raw transaction is kept in
``txs/``, so a run killed at any moment resumes without paying anyone twice:
a ``sent`` transfer with no receipt is broadcast again from its raw bytes, and only
paid again if its nonce was taken by another transaction (so it can never be mined).
"""
import logging
import time
from dataclasses import dataclass, field

from .contracts import TOKEN, function
from .errors import ChainError, IncompleteRun, WalletError
from .rpc import RpcError
from .syncer import registrations
from .transactions import TX_GAS, WalletNonces, broadcast, send_all, succeeded, wait_receipts

log = logging.getLogger(__name__)

BATCH = 250  # transfers per batch; two batches are in flight at once


@dataclass
class PaymentState:
    paid: set = field(default_factory=set)
    sent: dict = field(default_factory=dict)  # account -> tx hash, receipt not seen yet
    raw: dict = field(default_factory=dict)   # tx hash -> raw bytes journalled with it


def load_state(journal) -> PaymentState:
    state = PaymentState()
    for record in journal.records():
        if len(record) < 2:
            continue
        kind, account = record[0], record[1]
        if kind == "sent":
            state.sent[account] = record[2]
            state.raw[record[2]] = bytes.fromhex(record[3]) if len(record) > 3 else None
        elif kind == "paid":
            state.paid.add(account)
            state.sent.pop(account, None)
    return state


class BalancePayer:
    """Pays opening balances from one wallet; ``run`` returns when everyone is paid."""

    def __init__(self, network, wallet, datadir, journal, gas_price: int, progress=None):
        self.network = network
        self.wallet = wallet
        self.datadir = datadir
        self.journal = journal
        self.gas_price = gas_price
        self.progress = progress
        self.nonces = WalletNonces(network.rpc, wallet.address)
        self.state = PaymentState()
        self.skipped = {}  # account -> why it cannot be paid
        self._covered = (0, 0)  # (token amount, transfers) the last funds check found covered

    def resume(self):
        """Settle transfers a previous run sent but did not see mined."""
        self.state = load_state(self.journal)
        if not self.state.sent:
            return
        rpc = self.network.rpc
        hashes = dict(self.state.sent)
        answers = rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes.values()])
        lost, settled = [], []
        for (account, tx_hash), receipt in zip(hashes.items(), answers):
            if isinstance(receipt, dict):
                settled.append((account, tx_hash, receipt))
            else:
                lost.append((account, tx_hash))
        resent, refused = [], []
        for account, tx_hash in lost:
            raw = self.state.raw.get(tx_hash) or self.datadir.read_tx(tx_hash)
            error = broadcast(rpc, [_Raw(raw)])[0] if raw else RpcError(0, "raw transaction missing")
            if error is None or "known" in error.message.lower():
                resent.append((account, tx_hash))
            else:
                refused.append((account, tx_hash, error))
        # a refused one may have been mined since the first look (the node's pool kept draining):
        # only a transfer that has no receipt now and whose nonce is gone can be paid again
        answers = rpc.batch([("eth_getTransactionReceipt", [h]) for _, h, _ in refused])
        for (account, tx_hash, error), receipt in zip(refused, answers):
            if isinstance(receipt, dict):
                settled.append((account, tx_hash, receipt))
            else:
                log.info("transfer %s for %s was never mined (%s); paying again", tx_hash, account, error.message)
                del self.state.sent[account]
        if resent:
            receipts = wait_receipts(rpc, [h for _, h in resent])
            settled += [(account, tx_hash, receipts[tx_hash]) for account, tx_hash in resent]
        self._settle_all(settled)

    def _settle_all(self, settled):
        """Journal mined transfers as paid; a reverted one stops the run."""
        for account, tx_hash, receipt in settled:
            if not succeeded(receipt):
                raise ChainError(f"the opening balance transfer {tx_hash} to {account} reverted: does the wallet "
                                 f"{self.wallet.address} hold enough {self.network.token.symbol}?")
        self.journal.append([("paid", account, tx_hash) for account, tx_hash, _ in settled])
        for account, _, _ in settled:
            self.state.paid.add(account)
            self.state.sent.pop(account, None)
        if self.progress:
            self.progress.update(len(settled))

    def check_funds(self, remaining_amount: int, remaining_txs: int):
        """Fail before sending anything if the wallet cannot cover the rest of the run."""
        rpc = self.network.rpc
        raw = rpc.eth_calls([(self.network.token.address, function(TOKEN, "balanceOf").hexdata(self.wallet.address))])
        tokens = function(TOKEN, "balanceOf").decode(raw[0])
        native = rpc.balances([self.wallet.address])[0]
        token = self.network.token
        if not isinstance(tokens, RpcError) and tokens < remaining_amount:
            raise WalletError(f"wallet {self.wallet.address} holds {tokens / 10**token.decimals:,.6f} {token.symbol} "
                              f"but the opening balances need {remaining_amount / 10**token.decimals:,.6f}: "
                              f"send it at least {(remaining_amount - tokens) / 10**token.decimals:,.6f} more")
        gas_needed = remaining_txs * TX_GAS * self.gas_price
        if native < gas_needed:
            raise WalletError(f"wallet {self.wallet.address} holds {native} wei of gas but {remaining_txs} transfers "
                              f"need up to {gas_needed} wei: send it at least {gas_needed - native} wei")
        self._covered = (remaining_amount, remaining_txs)

    def _ensure_funds(self, amount: int, txs: int):
        """``check_funds`` for one batch, read from the chain only when what the last check covered
        is used up (another script may spend from the same wallet meanwhile)."""
        covered_amount, covered_txs = self._covered
        if amount > covered_amount or txs > covered_txs:
            self.check_funds(amount, txs)
            covered_amount, covered_txs = self._covered
        self._covered = (covered_amount - amount, covered_txs - txs)

    def pay(self, users: list):
        """Pay ``[(account, amount), ...]`` and wait until the transfers are mined."""
        self.settle(self.send(users))

    def send(self, users: list) -> list:
        """Sign, journal and broadcast transfers under the wallet lock; returns ``[(account, tx hash)]``
        for ``settle`` (zero amounts are journalled as paid at once)."""
        zero = [(a, amount) for a, amount in users if amount == 0]
        if zero:
            self.journal.append([("paid", account, "-") for account, _ in zero])
            self.state.paid.update(a for a, _ in zero)
            if self.progress:
                self.progress.update(len(zero))
        users = [(a, amount) for a, amount in users if amount > 0]
        if not users:
            return []
        transfer = function(TOKEN, "transfer")
        self._ensure_funds(sum(amount for _, amount in users), len(users))
        with self.nonces.reserve() as next_nonce:
            txs = [self.wallet.sign(nonce=next_nonce(), gas_price=self.gas_price, gas=TX_GAS,
                                    to=self.network.token.address, data=transfer.data(account, amount),
                                    chain_id=self.network.chain_id) for account, amount in users]
            self.datadir.write_txs(txs)
            # the intent is on disk before anything can be mined
            self.journal.append([("sent", account, tx.hash, tx.raw.hex()) for (account, _), tx in zip(users, txs)])
            for (account, _), tx in zip(users, txs):
                self.state.sent[account] = tx.hash
            send_all(self.network.rpc, txs, "transfer")
        return [(account, tx.hash) for (account, _), tx in zip(users, txs)]

    def settle(self, sent: list):
        """Wait for ``send``'s transfers and journal them paid."""
        if sent:
            receipts = wait_receipts(self.network.rpc, [tx_hash for _, tx_hash in sent])
            self._settle_all([(account, tx_hash, receipts[tx_hash]) for account, tx_hash in sent])


class _Raw:
    def __init__(self, raw):
        self.raw = raw


def follow_and_pay(payer: BalancePayer, lookup_amount, total_users: int, from_block: int,
                   follow=False, idle_timeout=60.0):
    """Scan registrations from ``from_block`` and pay them until all ``total_users`` are paid.

    ``lookup_amount(account)`` gives the opening balance for a new address, or None while the
    datadir does not know it yet (it is retried on the next poll)."""
    rpc = payer.network.rpc
    cursor = from_block
    waiting = []  # registered accounts the datadir cannot map yet
    last_progress = time.monotonic()
    delay = 0.05
    while True:
        head = rpc.block_number()
        found = [r.account for r in registrations(rpc, payer.network.accounts_index, cursor, head)]
        cursor = head + 1
        todo, unknown = [], []
        for account in waiting + found:
            if account in payer.state.paid or account in payer.state.sent:
                continue
            amount = lookup_amount(account)
            (unknown if amount is None else todo).append((account, amount) if amount is not None else account)
        waiting = list(dict.fromkeys(unknown))
        if todo:
            in_flight = []  # one batch is mined while the next is signed and sent
            for start in range(0, len(todo), BATCH):
                sent = payer.send(todo[start:start + BATCH])
                payer.settle(in_flight)
                in_flight = sent
            payer.settle(in_flight)
            last_progress = time.monotonic()
            delay = 0.05
        if len(payer.state.paid) >= total_users and not follow:
            return
        if not follow and time.monotonic() - last_progress > idle_timeout:
            missing = total_users - len(payer.state.paid)
            raise IncompleteRun(f"{missing} of {total_users} users have no registration on chain after "
                                f"{idle_timeout:.0f} s of waiting: run import_users.py (it can run at the same time), "
                                "then run this again; --follow keeps waiting")
        if not todo:
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def add_balance_args(parser):
    """The flags every backend's import_balance.py shares."""
    parser.add_argument("--old-chain-spec", dest="CHAIN_OLD_SPEC", metavar="SPEC",
                        help="chain spec of the generated addresses (default evm:oldchain:1)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--offset", type=int, metavar="BLOCK",
                       help="block to start at (default: the height recorded in the datadir, else 0)")
    start.add_argument("--head", action="store_true", help="start at the current block (only new registrations)")
    parser.add_argument("--follow", action="store_true",
                        help="keep following the chain after every user is paid")
    parser.add_argument("--idle-timeout", type=float, default=60.0, metavar="S",
                        help="give up after S seconds without a new registration (default 60)")


def run_balances(settings, datadir, args):
    """Pay every user of ``datadir`` registered on chain; returns the summary line."""
    from .chainspec import ChainSpec
    from .height import read_height
    from .progress import Progress
    from .registry import connect_from_settings
    from .signer import load_wallet
    from .transactions import gas_price

    datadir.require_complete()
    old_chain = ChainSpec.parse(settings.get("CHAIN_OLD_SPEC", "evm:oldchain:1"))
    network = connect_from_settings(settings)
    wallet = load_wallet(settings)
    skipped = []
    amounts = datadir.balances(skipped)
    start = network.rpc.block_number() if args.head else (
        args.offset if args.offset is not None else (read_height(datadir.path) or 0))

    def lookup_amount(account):
        path = datadir.new_path(account)
        if not path.exists():
            return None
        return amounts.get(datadir.read_person(path).old_address(old_chain))

    payer = BalancePayer(network, wallet, datadir, datadir.journal("balances"),
                         gas_price(network.rpc, settings.int("CHAIN_GAS_PRICE")))
    with payer.journal, Progress(len(amounts), "import_balance") as progress:
        payer.resume()
        payer.progress = progress
        if not payer.state.paid and not payer.state.sent:  # a fresh run: say up front what it all costs
            payer.check_funds(amounts.total(), amounts.count_nonzero())
        follow_and_pay(payer, lookup_amount, len(amounts), start, args.follow, args.idle_timeout)
    if skipped:
        for error in skipped:
            log.error("skipped %s", error)
        raise IncompleteRun(f"{len(skipped)} corrupt balances.csv lines skipped (first: {skipped[0]}): "
                            "fix them, then run again")
    return f"import_balance: {len(payer.state.paid)} of {len(amounts)} users paid; this run: {progress.summary()}"
