"""Benchmark of the USSD path on the devnet: ``make bench BACKEND=cic_ussd`` (BENCH_N users, default 1,000).

Prints users/s and peak RSS of every step of ``make seed`` (create, record_height, import_users,
import_balance, import_meta, verify) and the end-to-end rate, and the rate at which the devnet's
cic-eth engine alone creates accounts for the same number of users (the cic_eth importer), which
bounds what any USSD import can reach. Target (issue 6): >= 50 users/s end to end at N=1,000.
"""
import os

import pytest

from measure import measure, measure_seed, print_seed

pytestmark = [pytest.mark.bench, pytest.mark.integration, pytest.mark.timeout(3600)]

N = int(os.environ.get("BENCH_N", "1000"))


def test_bench_cic_ussd(devnet_factory, tmp_path):
    net = devnet_factory("cic_ussd")
    env = net.env
    steps, end_to_end = measure_seed("cic_ussd", N, tmp_path / "out", env, ("--retry-for", 60),
                                     phone_pointers=False, seed=3)
    engine_dir = tmp_path / "engine"
    measure("create", N, "scripts/create_import_users.py", "--dir", engine_dir, "--seed", 2, N, env=env)
    engine_only = measure("cic_eth import", N, "cic_eth/import_users.py", engine_dir, env=env)
    print_seed(f"cic_ussd path, N={N}", steps, N, end_to_end)
    print(f"{'engine alone':18} {engine_only.line()[19:]}  (cic_eth/import_users.py: the engine's creation rate)")
