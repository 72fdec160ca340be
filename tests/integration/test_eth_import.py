"""The sovereign-wallet path end to end on a real anvil with the real CIC contracts."""
import json
import os
import signal

import pytest

from cic_seed.contracts import ACCOUNTS_INDEX, function
from cic_seed.registry import connect_from_settings

from scriptrun import create_users, run_script, start_script, wait_for_journal

pytestmark = pytest.mark.integration


def entry_count(settings) -> int:
    network = connect_from_settings(settings)
    fn = function(ACCOUNTS_INDEX, "entryCount")
    return fn.decode(network.rpc.eth_calls([(network.accounts_index, fn.hexdata())])[0])


def seed_eth(datadir, env):
    run_script("scripts/record_height.py", datadir, env=env, check=True)
    run_script("eth/import_users.py", datadir, env=env, check=True)
    run_script("eth/import_balance.py", datadir, env=env, check=True)


META_CHECKS = "metadata,metadata_phone,metadata_custom"


def verify(datadir, env, *extra):
    """verify without the custodial key check (sovereign keys) and the metadata checks (not imported here)."""
    return run_script("scripts/verify.py", "--exclude", "local_key", "--exclude", META_CHECKS, *extra, datadir, env=env)


def test_seed_then_verify_and_verify_notices_a_wrong_balance(devnet, tmp_path):
    datadir = tmp_path / "out"
    create_users(datadir, 40, devnet.env)
    before = entry_count(devnet.settings)
    seed_eth(datadir, devnet.env)
    assert entry_count(devnet.settings) == before + 40
    run_script("cic_meta/import_meta.py", datadir, env=devnet.env, check=True)
    run_script("cic_meta/import_meta_phone.py", datadir, env=devnet.env, check=True)
    result = run_script("scripts/verify.py", "--exclude", "local_key", "--json", datadir, env=devnet.env)
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {c["name"]: c["ok"] for c in report["checks"] if not c["skipped"]} == \
        {"accounts_index": 40, "balance": 40, "gas": 40, "faucet": 40, "metadata": 40, "metadata_phone": 40,
         "metadata_custom": 40}
    # a second backend on the same datadir would give everyone a second account: refused
    other = run_script("cic_eth/import_users.py", datadir, env=devnet.env)
    assert other.returncode == 2 and "was imported through eth" in other.stderr
    # a user whose expected balance differs must be named and fail the run
    lines = (datadir / "balances.csv").read_text().splitlines()
    address, amount = lines[0].split(",")
    lines[0] = f"{address},{int(amount) + 1}"
    (datadir / "balances.csv").write_text("\n".join(lines) + "\n")
    result = verify(datadir, devnet.env)
    assert result.returncode == 1
    assert "balance          FAIL ok 39 failed 1" in result.stdout


def test_kill_both_scripts_mid_run_then_rerun_registers_and_pays_once(devnet, tmp_path):
    datadir = tmp_path / "out"
    create_users(datadir, 300, devnet.env, seed=11)
    run_script("scripts/record_height.py", datadir, env=devnet.env, check=True)
    before = entry_count(devnet.settings)
    for script, journal, marker in (("eth/import_users.py", "eth_import_users", "planned"),
                                    ("eth/import_balance.py", "balances", "sent")):
        proc = start_script(script, "--batch-size" if "users" in script else "--idle-timeout",
                            50 if "users" in script else 60, datadir, env=devnet.env)
        log = datadir / "journal" / f"{journal}.log"
        wait_for_journal(log, marker, 60, proc)
        assert proc.poll() is None, f"{script} finished before it could be killed: {proc.communicate()}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if "users" in script:  # a keyfile lost with the crash comes back from the journal
            lost = sorted((datadir / "keystore").glob("*.json"))[0]
            lost.unlink()
        run_script(script, datadir, env=devnet.env, check=True)
        if "users" in script:
            assert lost.exists() and os.stat(lost).st_mode & 0o777 == 0o600
    assert entry_count(devnet.settings) == before + 300
    planned = [line.split()[1] for line in (datadir / "journal" / "eth_import_users.log").read_text().splitlines()
               if line.startswith("planned")]
    assert len(planned) == len(set(planned)) == 300  # one new address per old user
    result = verify(datadir, devnet.env)
    assert result.returncode == 0, result.stdout  # exact balances: nobody paid twice


def test_users_and_balances_at_once_with_one_wallet(devnet, tmp_path):
    datadir = tmp_path / "out"
    create_users(datadir, 200, devnet.env, seed=12)
    run_script("scripts/record_height.py", datadir, env=devnet.env, check=True)
    balance = start_script("eth/import_balance.py", datadir, env=devnet.env)
    users = start_script("eth/import_users.py", "--batch-size", 25, datadir, env=devnet.env)
    assert users.wait(timeout=240) == 0, users.communicate()
    assert balance.wait(timeout=240) == 0, balance.communicate()
    result = verify(datadir, devnet.env)
    assert result.returncode == 0, result.stdout


def test_corrupt_records_are_skipped_named_and_fail_the_run(devnet, tmp_path):
    datadir = tmp_path / "out"
    create_users(datadir, 10, devnet.env, seed=13)
    broken = sorted((datadir / "old").rglob("*.json"))[3]
    broken.write_text("{not json")
    run_script("scripts/record_height.py", datadir, env=devnet.env, check=True)
    result = run_script("eth/import_users.py", datadir, env=devnet.env)
    assert result.returncode == 1
    assert broken.name in result.stderr
    assert "9 of 10 users registered" in result.stdout
    assert "Traceback" not in result.stderr
