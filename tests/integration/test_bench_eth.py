"""Benchmark of the eth path on the devnet: ``make bench`` (BENCH_N users, default 10,000).

Prints users/s and peak RSS of import_users, import_balance and verify, the end-to-end time,
and, on the same anvil, the raw limit: pre-signed value transfers pushed in JSON-RPC batches.
Targets (issue 3, 2-core machine): import_users >= 500/s, import_balance >= 1,000/s,
verify >= 2,000/s, N=10,000 end to end < 60 s.
"""
import os
import time

import pytest

from cic_seed.rpc import RpcClient
from cic_seed.signer import Signer
from cic_seed.transactions import broadcast, wait_receipts
from devnet.deploy import deployer_key

from measure import measure_seed, print_seed

pytestmark = [pytest.mark.bench, pytest.mark.integration, pytest.mark.timeout(3600)]

N = int(os.environ.get("BENCH_N", "10000"))


def raw_transfer_rate(url: str, count: int, batch: int = 500) -> float:
    """Sign ``count`` value transfers ahead, push them in batches of ``batch``, each awaited before the
    next (anvil 1.7.1 stops mining when thousands of one sender's transactions wait in its pool): tx/s."""
    rpc = RpcClient(url)
    sender = Signer(deployer_key())
    start_nonce = rpc.nonce(sender.address)
    price = rpc.gas_price() * 2
    sink = Signer.generate().address
    txs = [sender.sign(nonce=start_nonce + i, gas_price=price, gas=21_000, to=sink, value=1, chain_id=8996)
           for i in range(count)]
    started = time.monotonic()
    for i in range(0, count, batch):
        assert all(e is None for e in broadcast(rpc, txs[i:i + batch]))
        wait_receipts(rpc, [txs[min(i + batch, count) - 1].hash])
    return count / (time.monotonic() - started)


def test_bench_eth(devnet, tmp_path):
    env = devnet.env
    steps, end_to_end = measure_seed("eth", N, tmp_path / "out", env, ("--exclude", "local_key"))
    print_seed(f"eth path, N={N}", steps, N, end_to_end)
    raw = raw_transfer_rate(devnet.rpc_url, 5000)
    print(f"{'raw anvil limit':18} {5000:>7} pre-signed transfers in batches: {raw:.0f} tx/s")
