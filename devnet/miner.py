"""A watchdog beside anvil: mines what automine left in the pool.

anvil's automine sometimes misses ready transactions when many arrive at once (foundry issue
#10122, seen here with anvil 1.7.1 under batched load): they wait in the pool until the next
transaction comes, which for the last batch of a run is never. Every ``interval`` seconds this
checks the pool; when transactions are pending and no block was mined since the last look, it
mines one (``evm_mine``). It never touches a chain that keeps mining by itself.

    python -m devnet.miner --url http://127.0.0.1:63545 [--interval 0.25]
"""
import argparse
import sys
import time
from pathlib import Path

from .anvil import rpc_call, rpc_url
from .process import Service

NAME = "miner"


def build_command(url: str, interval: float = 0.25, python: str = sys.executable) -> list:
    return [python, "-m", "devnet.miner", "--url", url, "--interval", str(interval)]


def nudge(url: str, last_block):
    """One look: mine a block if transactions wait and the chain stood still; returns the block seen."""
    block = rpc_call(url, "eth_blockNumber", [])
    status = rpc_call(url, "txpool_status", [])
    if block is None or not isinstance(status, dict):
        return last_block
    if int(status.get("pending", "0x0"), 16) and block == last_block:
        rpc_call(url, "evm_mine", [])
    return block


def watch(url: str, interval: float):
    last_block = None
    while True:
        last_block = nudge(url, last_block)
        time.sleep(interval)


def service(settings, state_dir: Path) -> Service:
    """The watchdog as a devnet Service (no port of its own; ready once its process runs)."""
    return Service(NAME, build_command(rpc_url(settings)), state_dir, 0, ready=lambda: True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--interval", type=float, default=0.25)
    args = parser.parse_args(argv)
    try:
        watch(args.url, args.interval)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
