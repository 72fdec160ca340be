"""The devnet USSD server over real HTTP, creating accounts through the real celery engine on real anvil,
writing to the real devnet meta server: what a cic-ussd client sees."""
import http.client
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode, urlsplit

import pytest
import requests

from cic_seed.celery_client import api_from_settings
from cic_seed.contracts import ACCOUNTS_INDEX, function
from cic_seed.pointers import custom_pointer, phone_pointer
from cic_seed.registry import connect_from_settings
from cic_seed.ussd_client import UssdClient, new_session, registered
from devnet import engine, ussd_server
from devnet.ussd_menu import PhoneTable

from test_eth_import import entry_count

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CODE = "*483*46#"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def net(devnet_factory):
    return devnet_factory("cic_ussd")


@pytest.fixture
def client(net):
    with UssdClient(net.env["USSD_PROVIDER"], CODE) as c:
        yield c


_serial = [int(time.time() * 1000) % 10**6]


def fresh_phone() -> str:
    _serial[0] += 1
    return f"+2547{_serial[0] % 10**8:08d}"


def post(net, body: bytes, headers=None, path="/"):
    return requests.post(net.env["USSD_PROVIDER"] + path, data=body, headers=headers or FORM, timeout=10)


def form(phone, session="s", text="", code=CODE):
    return urlencode({"sessionId": session, "serviceCode": code, "phoneNumber": phone, "text": text}).encode()


def wait_pointer(net, phone, timeout=60):
    url = f"{net.env['META_URL']}/{phone_pointer(phone)}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = requests.get(url, timeout=10)
        if answer.status_code == 200:
            return answer.json()
        time.sleep(0.1)
    raise AssertionError(f"no phone pointer for {phone} within {timeout} s")


def is_registered_on_chain(net, address, timeout=60):
    network = connect_from_settings(net.settings)
    have = function(ACCOUNTS_INDEX, "have")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if have.decode(network.rpc.eth_calls([(network.accounts_index, have.hexdata("0x" + address))])[0]) is True:
            return True
        time.sleep(0.2)
    return False


def test_http_layer_matches_cic_ussd(net):
    url = net.env["USSD_PROVIDER"]
    assert requests.get(url + "/health-check").text == "healthy"
    assert requests.get(url + "/").status_code == 405
    assert post(net, form(fresh_phone()), path="/other").status_code == 405
    assert requests.put(url + "/", data=b"x").status_code == 405
    refused = post(net, form(fresh_phone()), headers={"Content-Type": "text/plain"})
    assert (refused.status_code, refused.reason) == (405, "Urlencoded, please")
    too_big = post(net, form(fresh_phone(), text="1" * 1100))
    assert (too_big.status_code, too_big.reason) == (400, "Size matters")
    bad_phone = post(net, form("+2547000000001234"))
    assert (bad_phone.status_code, bad_phone.text) == (400, "")
    bare_plus = post(net, form(fresh_phone()).replace(b"%2B", b"+"))  # a bare + is a space, as in cic-ussd
    assert bare_plus.status_code == 400
    wrong_code = post(net, form(fresh_phone(), code="*1#"))
    assert wrong_code.status_code == 200 and wrong_code.text.startswith("Bonyeza *483*46#")
    missing = post(net, urlencode({"serviceCode": CODE, "phoneNumber": fresh_phone()}).encode())
    assert missing.status_code == 400
    menu = post(net, form(fresh_phone(), session="q"), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert menu.status_code == 200 and menu.headers["Content-Type"] == "text/plain"
    assert menu.text.startswith("CON Karibu Sarafu Network!") and int(menu.headers["Content-Length"]) == len(menu.content)
    for junk in ("abc", "*", "1*x", "9" * 50):  # never a 5xx for normal input
        assert post(net, form(fresh_phone(), session="j", text=junk)).status_code == 200


def test_missing_content_length_is_refused(net):
    host, port = urlsplit(net.env["USSD_PROVIDER"]).hostname, urlsplit(net.env["USSD_PROVIDER"]).port
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n")
        assert sock.recv(200).startswith(b"HTTP/1.1 400 Size matters")


def test_keep_alive_serves_many_dials_on_one_connection(net):
    parts = urlsplit(net.env["USSD_PROVIDER"])
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        for _ in range(20):
            connection.request("POST", "/?username=&password=", body=form(fresh_phone()), headers=FORM)
            response = connection.getresponse()
            assert response.status == 200 and response.read().startswith(b"CON Karibu")
    finally:
        connection.close()


def test_language_choice_creates_a_registered_account_with_pointer_and_tags(net, client):
    phone, session = fresh_phone(), new_session()
    before = entry_count(net.settings)
    assert not registered(client.dial(phone, session, ""))
    assert client.dial(phone, session, "1").startswith("END Your account is being created")
    address = wait_pointer(net, phone)
    assert isinstance(address, str) and len(address) == 40 and address == address.lower()  # as cic-ussd stores it
    tags = requests.get(f"{net.env['META_URL']}/{custom_pointer(address)}").json()
    assert tags == {"tags": ["ussd", "individual"]}
    assert registered(client.dial(phone, new_session(), ""))
    assert is_registered_on_chain(net, address)
    assert entry_count(net.settings) == before + 1
    assert api_from_settings(net.settings).have_account("0x" + address, "evm:bloxberg:8996")


def test_json_body_creates_on_the_first_dial(net):
    phone = fresh_phone()
    body = json.dumps({"sessionId": "x", "serviceCode": CODE, "phoneNumber": phone, "text": CODE}).encode()
    answer = post(net, body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 200 and answer.text.startswith("END Your account is being created")
    assert is_registered_on_chain(net, wait_pointer(net, phone))
    again = post(net, body, headers={"Content-Type": "application/json"})
    assert again.text.startswith("CON Welcome to Sarafu")


def test_many_sessions_of_one_phone_create_one_account(net, client):
    phone = fresh_phone()
    before = entry_count(net.settings)
    sessions = [new_session() for _ in range(20)]
    with ThreadPoolExecutor(20) as pool:
        list(pool.map(lambda s: client.dial(phone, s, ""), sessions))
        answers = list(pool.map(lambda s: client.dial(phone, s, "2"), sessions))
    assert all(a.startswith("END") for a in answers)
    address = wait_pointer(net, phone)
    assert is_registered_on_chain(net, address)
    time.sleep(1)  # a duplicate would be registered by now too
    assert entry_count(net.settings) == before + 1


def test_restart_with_pending_creations_finishes_each_once(net, client):
    """Accounts asked for while the engine is down, then the USSD server restarted: each phone gets one."""
    worker = engine.service(net.settings, net.state_dir)
    server = ussd_server.service(net.settings, net.state_dir)
    phones = [fresh_phone() for _ in range(5)]
    before = entry_count(net.settings)
    worker.stop()
    try:
        for phone in phones:
            session = new_session()
            client.dial(phone, session, "")
            assert client.dial(phone, session, "1").startswith("END")
        server.stop()
        server.start()
    finally:
        worker.start()
    addresses = [wait_pointer(net, phone) for phone in phones]
    assert len(set(addresses)) == 5
    assert all(is_registered_on_chain(net, a) for a in addresses)
    time.sleep(1)
    assert entry_count(net.settings) == before + 5
    table = PhoneTable(net.state_dir / "ussd.sqlite").open()
    try:
        assert {table.get(p).status for p in phones} == {"ready"}
    finally:
        table.close()
