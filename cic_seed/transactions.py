"""Sending signed transactions in batches and waiting for their receipts.

Two scripts may sign with the same wallet at the same time (import_users pays gas while
import_balance pays tokens). ``WalletNonces`` serialises them with a file lock held while a
batch is numbered and sent: the next nonce is always the node's pending count, read under the lock.
"""
import fcntl
import hashlib
import logging
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import ChainError
from .rpc import RpcClient, RpcError

log = logging.getLogger(__name__)

TX_GAS = 200_000  # covers add, transfer and giveTo on either hardfork (contracts.md section 7)


class WalletNonces:
    """Nonces for one sending address, shared safely between processes on this machine."""

    def __init__(self, rpc: RpcClient, address: str, lock_dir: Path | None = None):
        self.rpc = rpc
        self.address = address
        digest = hashlib.sha256(f"{rpc.url}|{address.lower()}".encode()).hexdigest()[:16]
        self.lock_path = Path(lock_dir or tempfile.gettempdir()) / f"cic-seed-nonce-{digest}.lock"

    @contextmanager
    def reserve(self):
        """Hold the wallet's lock; yields a function that hands out consecutive nonces."""
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                counter = iter(range(self.rpc.nonce(self.address, "pending"), 2**63))
                yield lambda: next(counter)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def broadcast(rpc: RpcClient, txs: list) -> list:
    """Send raw transactions in one batch; returns the RpcError or None per transaction."""
    answers = rpc.batch([("eth_sendRawTransaction", ["0x" + tx.raw.hex()]) for tx in txs])
    return [a if isinstance(a, RpcError) else None for a in answers]


def send_all(rpc: RpcClient, txs: list, what: str) -> None:
    """Broadcast and fail loudly on the first rejection (a gap would stall every later nonce)."""
    for tx, error in zip(txs, broadcast(rpc, txs)):
        if error is not None:
            raise ChainError(f"the node refused {what} {tx.hash} (nonce {tx.nonce}): {error.message}")


def wait_receipts(rpc: RpcClient, hashes: list, timeout: float = 120) -> dict:
    """Poll until every transaction is mined; returns hash -> receipt.

    Only the last transaction is polled while it is pending (nodes mine in arrival order, so
    the earlier ones are then mined too); then all receipts are fetched in one batch."""
    receipts = {}
    pending = list(hashes)
    delay = 0.002
    deadline = time.monotonic() + timeout
    while pending:
        last = rpc.batch([("eth_getTransactionReceipt", [pending[-1]])])[0]
        if isinstance(last, dict):
            answers = rpc.batch([("eth_getTransactionReceipt", [h]) for h in pending[:-1]]) + [last]
            still = []
            for h, receipt in zip(pending, answers):
                if isinstance(receipt, dict):
                    receipts[h] = receipt
                else:
                    still.append(h)
            pending = still
            if not pending:
                break
        if time.monotonic() > deadline:
            raise ChainError(f"{len(pending)} transactions not mined after {timeout:.0f} s (first: {pending[0]}): "
                             "is the node mining?")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    return receipts


def succeeded(receipt: dict) -> bool:
    return int(receipt.get("status", "0x0"), 16) == 1


def gas_price(rpc: RpcClient, configured: int | None) -> int:
    """The configured price, else the node's suggestion with headroom for a rising base fee."""
    return configured if configured else rpc.gas_price() * 2
