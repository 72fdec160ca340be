"""The USSD path end to end: the devnet USSD server, the celery engine, real redis, anvil and the meta
server; the scripts run as a user runs them."""
import json

import pytest

from cic_seed.datadir import Datadir
from devnet import engine, meta_server, ussd_server
from devnet.ussd_menu import PhoneTable

from scriptrun import create_users, run_script, start_script, wait_for_journal
from test_eth_import import entry_count

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

JOURNAL = "journal/cic_ussd_import_users.log"


@pytest.fixture(scope="module")
def net(devnet_factory):
    return devnet_factory("cic_ussd")


def seed(datadir, env, *import_args):
    run_script("scripts/record_height.py", datadir, env=env, check=True)
    run_script("cic_ussd/import_users.py", *import_args, datadir, env=env, check=True)
    run_script("cic_ussd/import_balance.py", datadir, env=env, check=True)
    run_script("cic_meta/import_meta.py", datadir, env=env, check=True)


def verify(datadir, env, *extra, retry_for=60):
    result = run_script("scripts/verify.py", "--retry-for", retry_for, "--json", *extra, datadir, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    return result, json.loads(result.stdout)


def active(report):
    return {c["name"]: c["ok"] for c in report["checks"] if not c["skipped"]}


def one_line_error(result, code, fragment):
    assert result.returncode == code, result.stdout + result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_ussd_seed_passes_every_check(net, tmp_path):
    datadir = tmp_path / "out"
    create_users(datadir, 40, net.env, seed=41)
    before = entry_count(net.settings)
    seed(datadir, net.env)
    result, report = verify(datadir, net.env)
    assert result.returncode == 0, result.stdout
    assert active(report) == {name: 40 for name in ("accounts_index", "balance", "gas", "faucet", "local_key",
                                                   "metadata", "metadata_phone", "metadata_custom", "ussd")}
    assert entry_count(net.settings) == before + 40
    assert not list((datadir / "phone" / "meta").glob("*"))  # the phone pointers are cic-ussd's own
    # the metadata import keeps the tags cic-ussd wrote beside the generated ones
    from cic_seed.datadir import Datadir
    from cic_seed.meta_client import MetaClient
    from cic_seed.pointers import custom_pointer
    new = sorted(Datadir(datadir).path.glob("new/*/*/*.json"))[0].stem
    with MetaClient(net.env["META_URL"]) as client:
        assert {"ussd", "individual"} <= set(client.get(custom_pointer(new))["tags"])
    again = run_script("cic_ussd/import_users.py", datadir, env=net.env)
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_2021_json_dials(net, tmp_path):
    datadir = tmp_path / "out"
    create_users(datadir, 8, net.env, seed=42)
    before = entry_count(net.settings)
    seed(datadir, net.env, "--json-body")
    result, report = verify(datadir, net.env)
    assert result.returncode == 0 and active(report)["ussd"] == 8, result.stdout
    assert entry_count(net.settings) == before + 8


def test_service_down_is_one_line_and_a_rerun_finishes(net, tmp_path):
    datadir = tmp_path / "out"
    create_users(datadir, 6, net.env, seed=43)
    run_script("scripts/record_height.py", datadir, env=net.env, check=True)
    before = entry_count(net.settings)
    for service, fragment in ((ussd_server.service(net.settings, net.state_dir), "cannot reach the USSD service"),
                              (meta_server.service(net.settings, net.state_dir), "cic-meta at")):
        service.stop()
        try:
            one_line_error(run_script("cic_ussd/import_users.py", datadir, env=net.env), 1, fragment)
        finally:
            service.start()
    assert entry_count(net.settings) == before
    seed(datadir, net.env)
    assert verify(datadir, net.env)[0].returncode == 0
    assert entry_count(net.settings) == before + 6


def test_service_going_away_mid_run_stops_dialling_and_a_rerun_finishes(net, tmp_path):
    datadir = tmp_path / "out"
    create_users(datadir, 60, net.env, seed=48)
    run_script("scripts/record_height.py", datadir, env=net.env, check=True)
    before = entry_count(net.settings)
    server = ussd_server.service(net.settings, net.state_dir)
    proc = start_script("cic_ussd/import_users.py", "--batch-size", 5, "--timeout", 10, datadir, env=net.env)
    journal = datadir / JOURNAL
    wait_for_journal(journal, "done", 5, proc)
    server.stop()
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        server.start()
    assert proc.returncode == 1, out + err
    assert "stopped dialling" in err and "cannot reach the USSD service" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 23  # at most 20 users named, then counts, not one line per user
    seed(datadir, net.env)
    assert verify(datadir, net.env)[0].returncode == 0
    assert entry_count(net.settings) == before + 60


def test_pointers_that_never_appear_are_named_and_a_rerun_creates_nobody_twice(net, tmp_path):
    datadir = tmp_path / "out"
    create_users(datadir, 80, net.env, seed=44)
    run_script("scripts/record_height.py", datadir, env=net.env, check=True)
    before = entry_count(net.settings)
    worker = engine.service(net.settings, net.state_dir)
    proc = start_script("cic_ussd/import_users.py", "--batch-size", 10, "--timeout", 5, datadir, env=net.env)
    journal = datadir / JOURNAL
    wait_for_journal(journal, "done", 10, proc)
    worker.stop()
    try:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, out + err
        assert "no phone pointer appeared within 5 s" in err and "a re-run waits again" in err
        assert "Traceback" not in err
        done = sum(line.startswith("done ") for line in journal.read_text().splitlines())
        assert 10 <= done < 80, done
    finally:
        worker.start()
    seed(datadir, net.env)
    result, report = verify(datadir, net.env)
    assert result.returncode == 0, result.stdout
    assert entry_count(net.settings) == before + 80


def test_a_journalled_choice_is_not_sent_again_unless_redial(net, tmp_path):
    datadir = tmp_path / "out"
    create_users(datadir, 4, net.env, seed=45)
    run_script("scripts/record_height.py", datadir, env=net.env, check=True)
    before = entry_count(net.settings)
    lost = next(Datadir(datadir).iter_old())  # as if its choice was sent on a run the service then lost
    journal = datadir / JOURNAL
    journal.parent.mkdir()
    journal.write_text(f"requested {lost.old_address()[2:].upper()}\n")
    result = run_script("cic_ussd/import_users.py", "--timeout", 2, datadir, env=net.env)
    assert result.returncode == 1
    assert lost.tel in result.stderr and "--redial" in result.stderr
    assert result.stdout.startswith("import_users: 3 users imported")
    run_script("cic_ussd/import_users.py", "--redial", datadir, env=net.env, check=True)
    run_script("cic_ussd/import_balance.py", datadir, env=net.env, check=True)
    run_script("cic_meta/import_meta.py", datadir, env=net.env, check=True)
    assert verify(datadir, net.env)[0].returncode == 0
    assert entry_count(net.settings) == before + 4


@pytest.mark.parametrize("args,fragment", [
    (["--ussd-provider", "http://127.0.0.1:1"], "cannot reach the USSD service at http://127.0.0.1:1"),
    (["--meta-provider", "http://127.0.0.1:1"], "cic-meta at http://127.0.0.1:1 is not reachable"),
    (["--ussd-provider", "127.0.0.1:1"], "is not an http(s) URL"),
])
def test_bad_input(net, tmp_path, args, fragment):
    datadir = tmp_path / "out"
    create_users(datadir, 2, net.env, seed=46)
    result = run_script("cic_ussd/import_users.py", *args, datadir, env=net.env)
    one_line_error(result, 2 if "http(s)" in fragment else 1, fragment)


def test_verify_ussd_check_reports_unknown_phones_and_http_errors(net, tmp_path):
    datadir = tmp_path / "out"
    create_users(datadir, 3, net.env, seed=47)
    seed(datadir, net.env)
    gone = next(Datadir(datadir).iter_old()).tel
    table = PhoneTable(net.state_dir / "ussd.sqlite").open()
    try:
        table._db.execute("DELETE FROM account WHERE phone = ?", (gone,))  # the service forgets one phone
    finally:
        table.close()
    result, report = verify(datadir, net.env, "--include", "ussd,accounts_index", retry_for=0)
    ussd = next(c for c in report["checks"] if c["name"] == "ussd")
    assert result.returncode == 1 and (ussd["ok"], ussd["failed"]) == (2, 1)
    assert gone in ussd["failures"][0][1] and "does not know" in ussd["failures"][0][1]
    assert active(report)["accounts_index"] == 3
    # not a USSD service (the meta server refuses POST /): the check fails, verify does not crash
    result, report = verify(datadir, net.env, "--include", "ussd", "--ussd-provider", net.env["META_URL"],
                            retry_for=0)
    ussd = next(c for c in report["checks"] if c["name"] == "ussd")
    assert result.returncode == 1 and ussd["failed"] == 3 and "HTTP 4" in ussd["failures"][0][1]
    result, report = verify(datadir, net.env, "--include", "ussd", "--ussd-provider", "http://127.0.0.1:1",
                            retry_for=0)
    ussd = next(c for c in report["checks"] if c["name"] == "ussd")
    assert result.returncode == 1 and "cannot reach the USSD service" in ussd["failures"][0][1]
