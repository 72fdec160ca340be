"""The devnet's block producer: mines whenever transactions wait in anvil's pool.

anvil runs with ``--no-mining``. Its automine mines a block per incoming transaction, and a
block's cost grows with the state (measured: 84 users/s for the eth import on a chain holding
8,000 users, against 337 users/s when this miner takes whatever waits into one block). The
miner looks at ``txpool_status`` every few milliseconds while work arrives (backing off to
MAX_DELAY when idle) and mines one block (``evm_mine``) when transactions are pending.

It also repairs a pool fault of anvil 1.7.1 seen under batched load: a transaction can land in
the pool's *queued* section although its nonce is its sender's next one, and then is never
promoted, so it and every later transaction of that sender wait forever (``evm_mine`` does not
take queued transactions). When such a sender is seen on two checks in a row, the miner takes
that sender's transactions out of the pool and sends the same signed bytes again (same hashes),
so anvil admits them afresh, in nonce order.

    python -m devnet.miner --url http://127.0.0.1:63545 [--max-delay 0.05]
"""
import argparse
import logging
import sys
import time
from pathlib import Path

from cic_seed.errors import SeedError
from cic_seed.rpc import RpcClient, RpcError

from .anvil import rpc_url
from .process import Service

NAME = "miner"
MIN_DELAY = 0.002
MAX_DELAY = 0.05  # an idle devnet answers its first transaction within this
QUEUED_CHECK_SECONDS = 1.0  # txpool_content is heavy under load: read it at most this often
UNMINABLE_RETRY_SECONDS = 1.0  # a pool a block took nothing from is tried again after this

log = logging.getLogger("devnet.miner")


def build_command(url: str, max_delay: float = MAX_DELAY, python: str = sys.executable) -> list:
    return [python, "-m", "devnet.miner", "--url", url, "--max-delay", str(max_delay)]


class Miner:
    """Each ``look`` mines the pending transactions and readmits stuck queued ones."""

    def __init__(self, rpc: RpcClient):
        self.rpc = rpc
        self.suspects = set()  # (sender, nonce) stuck on the last queued check
        self._checked_at = 0.0
        self._unminable = (0, 0.0)  # (pending count, when) of a pool a block took nothing from

    def look(self) -> bool:
        """One look at the pool; True if a block with transactions was mined."""
        status = self.rpc.call("txpool_status", [])
        pending = int(status.get("pending", "0x0"), 16)
        now = time.monotonic()
        mined = False
        if pending and not self._known_unminable(pending, now):
            self.rpc.call("evm_mine", [])
            mined = bool(self.rpc.call("eth_getBlockByNumber", ["latest", False])["transactions"])
            self._unminable = (0, 0.0) if mined else (pending, now)
        if not int(status.get("queued", "0x0"), 16):
            self.suspects.clear()
        elif now - self._checked_at >= QUEUED_CHECK_SECONDS:
            self._checked_at = now
            self.readmit_stuck()
        return mined

    def _known_unminable(self, pending: int, now: float) -> bool:
        """The same pool a block took nothing from (a transaction the node will not include):
        do not fill the chain with empty blocks; try again when it changes, or after a while."""
        count, when = self._unminable
        return pending == count and now - when < UNMINABLE_RETRY_SECONDS

    def readmit_stuck(self) -> list:
        """Readmit the senders stuck on two checks in a row; returns them."""
        pool = self.rpc.call("txpool_content", [])
        queued = {sender: min(int(n) for n in txs) for sender, txs in (pool.get("queued") or {}).items() if txs}
        senders = list(queued)
        nonces = self.rpc.batch([("eth_getTransactionCount", [s, "latest"]) for s in senders])
        stuck = {(s, queued[s]) for s, n in zip(senders, nonces) if isinstance(n, str) and int(n, 16) == queued[s]}
        confirmed = sorted(s for s, _ in stuck & self.suspects)
        self.suspects = {(s, n) for s, n in stuck if s not in confirmed}
        for sender in confirmed:
            self._readmit(sender, pool)
        return confirmed

    def _readmit(self, sender: str, pool: dict):
        txs = {}
        for section in ("pending", "queued"):
            for nonce, tx in ((pool.get(section) or {}).get(sender) or {}).items():
                txs[int(nonce)] = tx["hash"]
        ordered = [txs[n] for n in sorted(txs)]
        raws = self.rpc.batch([("eth_getRawTransactionByHash", [h]) for h in ordered])
        raws = [r for r in raws if isinstance(r, str)]
        self.rpc.call("anvil_removePoolTransactions", [sender])
        answers = self.rpc.batch([("eth_sendRawTransaction", [r]) for r in raws])
        refused = [a.message for a in answers if isinstance(a, RpcError)]
        log.warning("readmitted %d transaction(s) of %s stuck in anvil's queued pool (nonces %d..%d)%s",
                    len(raws), sender, min(txs), max(txs), f"; refused: {refused}" if refused else "")


def watch(url: str, max_delay: float):
    miner = Miner(RpcClient(url, timeout=10))
    delay = MIN_DELAY
    while True:
        try:
            mined = miner.look()
        except SeedError as e:  # the node starting, restarting or busy: look again soon
            log.info("look failed: %s", e)
            mined = False
        if mined:  # more may have arrived while the block was built
            delay = MIN_DELAY
            continue
        time.sleep(delay)
        delay = min(delay * 2, max_delay)


def service(settings, state_dir: Path) -> Service:
    """The watchdog as a devnet Service (no port of its own; ready once its process runs)."""
    return Service(NAME, build_command(rpc_url(settings)), state_dir, 0, ready=lambda: True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--max-delay", type=float, default=MAX_DELAY,
                        help="longest pause between looks at an idle pool (seconds)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        watch(args.url, args.max_delay)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
