"""A watchdog beside anvil: gets mined what anvil's pool forgot.

Two pool faults of anvil 1.7.1, both seen here under batched load:

- automine misses ready transactions when many arrive at once (foundry issue #10122): they
  wait in the pool until the next transaction comes, which for the last batch of a run is
  never. When transactions are pending and no block was mined since the last look, the
  watchdog mines one (``evm_mine``). It never touches a chain that keeps mining by itself.
- a transaction can land in the pool's *queued* section although its nonce is its sender's
  next one, and then is never promoted: it and every later transaction of that sender wait
  forever, and ``evm_mine`` does not take queued transactions. When such a sender is seen on
  two looks in a row, the watchdog takes that sender's transactions out of the pool and sends
  the same signed bytes again (same hashes), so anvil admits them afresh, in nonce order.

    python -m devnet.miner --url http://127.0.0.1:63545 [--interval 0.25]
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
QUEUED_CHECK_SECONDS = 1.0  # txpool_content is heavy under load: read it at most this often

log = logging.getLogger("devnet.miner")


def build_command(url: str, interval: float = 0.25, python: str = sys.executable) -> list:
    return [python, "-m", "devnet.miner", "--url", url, "--interval", str(interval)]


class Watchdog:
    """One ``look`` per interval: mine forgotten pending transactions, readmit stuck queued ones."""

    def __init__(self, rpc: RpcClient):
        self.rpc = rpc
        self.last_block = None
        self.suspects = set()  # (sender, nonce) stuck on the last queued check
        self._checked_at = 0.0

    def look(self):
        block, status = self.rpc.batch([("eth_blockNumber", []), ("txpool_status", [])])
        if isinstance(block, RpcError) or not isinstance(status, dict):
            return
        if int(status.get("pending", "0x0"), 16) and block == self.last_block:
            self.rpc.batch([("evm_mine", [])])
        self.last_block = block
        now = time.monotonic()
        if not int(status.get("queued", "0x0"), 16):
            self.suspects.clear()
        elif now - self._checked_at >= QUEUED_CHECK_SECONDS:
            self._checked_at = now
            self.readmit_stuck()

    def readmit_stuck(self) -> list:
        """Readmit the senders stuck on two checks in a row; returns them."""
        pool = self.rpc.call("txpool_content", [])
        queued = {sender: min(int(n) for n in txs) for sender, txs in (pool.get("queued") or {}).items() if txs}
        senders = list(queued)
        nonces = self.rpc.batch([("eth_getTransactionCount", [s, "latest"]) for s in senders])
        stuck = {(s, queued[s]) for s, n in zip(senders, nonces) if isinstance(n, str) and int(n, 16) == queued[s]}
        confirmed = sorted(s for s, _ in stuck & self.suspects)
        self.suspects = stuck - {(s, n) for s, n in stuck if s in confirmed}
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


def watch(url: str, interval: float):
    watchdog = Watchdog(RpcClient(url, timeout=10))
    while True:
        try:
            watchdog.look()
        except SeedError as e:  # the node restarting or busy: look again next time
            log.info("look failed: %s", e)
        time.sleep(interval)


def service(settings, state_dir: Path) -> Service:
    """The watchdog as a devnet Service (no port of its own; ready once its process runs)."""
    return Service(NAME, build_command(rpc_url(settings)), state_dir, 0, ready=lambda: True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--interval", type=float, default=0.25)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        watch(args.url, args.interval)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
