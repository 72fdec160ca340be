"""The custodial path end to end: real redis, the devnet's celery engine, real anvil."""
import json

import pytest

from devnet import engine

from scriptrun import create_users, run_script, start_script, wait_for_journal
from test_eth_import import META_CHECKS, entry_count

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def custodial(devnet_factory):
    return devnet_factory("cic_eth")


def seed(datadir, env, *import_args):
    run_script("scripts/record_height.py", datadir, env=env, check=True)
    run_script("cic_eth/import_users.py", *import_args, datadir, env=env, check=True)
    run_script("cic_eth/import_balance.py", datadir, env=env, check=True)


def verify(datadir, env):
    return run_script("scripts/verify.py", "--retry-for", 60, "--exclude", META_CHECKS, "--json", datadir, env=env)


def test_custodial_seed_passes_every_check(custodial, tmp_path):
    datadir = tmp_path / "out"
    create_users(datadir, 40, custodial.env, seed=31)
    before = entry_count(custodial.settings)
    seed(datadir, custodial.env)
    result = verify(datadir, custodial.env)
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout
    active = {c["name"]: c["ok"] for c in report["checks"] if not c["skipped"]}
    assert active["local_key"] == active["faucet"] == active["gas"] == active["balance"] == 40
    assert entry_count(custodial.settings) == before + 40
    again = run_script("cic_eth/import_users.py", datadir, env=custodial.env)
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_worker_stopped_mid_run_then_restarted_creates_nobody_twice(custodial, tmp_path):
    datadir = tmp_path / "out"
    create_users(datadir, 150, custodial.env, seed=32)
    run_script("scripts/record_height.py", datadir, env=custodial.env, check=True)
    before = entry_count(custodial.settings)
    worker = engine.service(custodial.settings, custodial.state_dir)
    proc = start_script("cic_eth/import_users.py", "--batch-size", 20, "--timeout", 5, datadir, env=custodial.env)
    journal = datadir / "journal" / "cic_eth_import_users.log"
    wait_for_journal(journal, "done", 20, proc)
    worker.stop()
    try:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, out + err
        assert "no callback for root task" in err and "'cic-eth'" in err
    finally:
        worker.start()
    seed(datadir, custodial.env)
    result = verify(datadir, custodial.env)
    assert result.returncode == 0, result.stdout
    assert entry_count(custodial.settings) == before + 150


def test_lost_callbacks_are_recovered_without_new_accounts(custodial, tmp_path):
    datadir = tmp_path / "out"
    create_users(datadir, 10, custodial.env, seed=33)
    before = entry_count(custodial.settings)
    run_script("scripts/record_height.py", datadir, env=custodial.env, check=True)
    # the worker publishes the callbacks where nobody listens
    result = run_script("cic_eth/import_users.py", "--redis-port-callback", 1, "--timeout", 3, datadir,
                        env=custodial.env)
    assert result.returncode == 1
    assert result.stderr.count("no callback for root task") == 10
    assert "--redis-host-callback" in result.stderr
    seed(datadir, custodial.env)  # the re-run finds the accounts cic-eth made in its result backend
    assert verify(datadir, custodial.env).returncode == 0
    assert entry_count(custodial.settings) == before + 10


@pytest.mark.parametrize("args,env_update,code,fragment", [
    ([], {"CELERY_BROKER_URL": "redis://127.0.0.1:1"}, 1, "cannot reach the celery broker at redis://127.0.0.1:1"),
    (["-i", "evm:8996"], {}, 2, "invalid chain spec"),
    (["--redis-port", "1"], {}, 1, "cannot reach redis at"),
])
def test_bad_input(custodial, tmp_path, args, env_update, code, fragment):
    datadir = tmp_path / "out"
    create_users(datadir, 2, custodial.env, seed=34)
    result = run_script("cic_eth/import_users.py", *args, datadir, env=dict(custodial.env, **env_update))
    assert result.returncode == code, result.stdout + result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
