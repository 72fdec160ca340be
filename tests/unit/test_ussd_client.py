"""USSD client pieces that need no service: answers, dial bodies, settings, commands, the scripts' CLI."""
import importlib.util
import json
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from cic_seed.config import load_settings
from cic_seed.errors import UsageError
from cic_seed.ussd_client import PIN_PROMPTS, UssdClient, classify, client_from_settings, registered
from devnet import ussd_menu, ussd_server

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("body,expected", [
    (ussd_menu.REGISTERED, True),                               # the devnet, as 2021 cic-ussd
    ("CON Welcome to Sarafu\n1. English\n2. Kiswahili\n3. Help\n", True),
    (PIN_PROMPTS[0], True), (PIN_PROMPTS[1], True),               # 2022, pending account
    ("CON Balance 0.00 SRF\n1. Send", True), ("CON Salio 0.00 SRF", True),  # 2022, active account
    ("CON Welcome to Sarafu Network!\n1. English\n2. Kiswahili", False),  # 2022 en: an UNKNOWN phone
    (ussd_menu.language_menu(0), False),                        # 2022 sw (the devnet's unknown phone)
    ("END Your account is being created", False), ("", False), ("CON", False),
    ("CON Please enter a new PIN", False),
])
def test_registered_reads_the_post_registration_states_of_both_generations(body, expected):
    assert registered(body) is expected


def test_classify():
    assert classify(ussd_menu.language_menu(0)) == "menu"
    assert classify(ussd_menu.REGISTERED) == "registered"
    assert classify(ussd_menu.CREATING["en"]) == "end"
    assert classify("Bonyeza *483*46#") == "other"


def test_form_and_json_bodies():
    client = UssdClient("http://h:1", "*483*46#").open()
    kind, body = client.body("+254712345678", "abc", "")
    assert kind == "application/x-www-form-urlencoded"
    assert b"phoneNumber=%2B254712345678" in body and b"serviceCode=%2A483%2A46%23" in body
    assert parse_qs(body.decode(), keep_blank_values=True)["text"] == [""]
    legacy = UssdClient("http://h:1", "*483*46#", json_body=True).open()
    kind, body = legacy.body("+254712345678", "abc", "*483*46#")
    assert kind == "application/json" and json.loads(body)["text"] == "*483*46#"


def test_query_carries_user_and_password_as_the_2022_seeder_sends_them():
    assert UssdClient("http://h:1/", "*1#").open()._path == "/?username=&password="
    assert UssdClient("http://h:1/ussd", "*1#", "u", "p w").open()._path == "/ussd/?username=u&password=p+w"


@pytest.mark.parametrize("url", ["localhost:63315", "ftp://h/", "http://h:notaport", ""])
def test_bad_provider_url_is_a_usage_error(url):
    with pytest.raises(UsageError, match="USSD_PROVIDER .* is not an http"):
        UssdClient(url, "*1#").open()


def test_settings_give_the_first_service_code(monkeypatch):
    monkeypatch.setenv("USSD_PROVIDER", "http://127.0.0.1:5")
    client = client_from_settings(load_settings(use_devnet=False))
    assert (client.url, client.service_code, client.user, client.password) == ("http://127.0.0.1:5", "*483*46#", "", "")


def test_server_command_env_and_address(tmp_path, monkeypatch):
    monkeypatch.setenv("USSD_PROVIDER", "http://localhost:7777")
    monkeypatch.setenv("META_URL", "http://127.0.0.1:7778")
    settings = load_settings(use_devnet=False)
    command = ussd_server.build_command(settings, tmp_path, python="py")
    assert command == ["py", "-m", "devnet.ussd_server", "--host", "127.0.0.1", "--port", "7777", "--db",
                       str(tmp_path / "ussd.sqlite")]
    env = ussd_server.server_env(settings, tmp_path)
    assert env["DEVNET_STATE_DIR"] == str(tmp_path.resolve()) and env["META_URL"] == "http://127.0.0.1:7778"
    assert env["USSD_SERVICE_CODE"] == "*483*46#,*483*061#,*384*96#"
    service = ussd_server.service(settings, tmp_path)
    assert (service.name, service.host, service.port, service.port_key) == ("ussd", "127.0.0.1", 7777,
                                                                           "USSD_PROVIDER")


def load(path):
    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script", ["cic_ussd/import_users.py", "cic_ussd/import_balance.py"])
def test_scripts_help(script, capsys):
    with pytest.raises(SystemExit) as stop:
        load(script).main(["--help"])
    assert stop.value.code == 0 and "usage" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--timeout", "0"], "--timeout above 0"),
    (["-i", "evm:x"], "invalid chain spec"),
])
def test_import_users_bad_input_is_a_usage_error(tmp_path, args, message):
    with pytest.raises(UsageError, match=message):
        load("cic_ussd/import_users.py").main([*args, str(tmp_path)])


def test_import_users_needs_a_generated_datadir(tmp_path):
    with pytest.raises(UsageError, match="holds no complete generation"):
        load("cic_ussd/import_users.py").main([str(tmp_path)])


def test_import_users_flags_reach_the_settings(tmp_path, capsys):
    with pytest.raises(SystemExit):
        load("cic_ussd/import_users.py").main(["--ussd-provider", "http://u:1", "--meta-provider", "http://m:2",
                                              "-i", "evm:foo:42", "--print-config", str(tmp_path)])
    out = capsys.readouterr().out
    assert "USSD_PROVIDER=http://u:1" in out and "META_URL=http://m:2" in out and "CIC_CHAIN_SPEC=evm:foo:42" in out
