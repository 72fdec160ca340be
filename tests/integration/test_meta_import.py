"""cic_meta/import_meta.py and import_meta_phone.py against the devnet meta server over real HTTP.

The datadir comes from scripts/create_import_users.py; the import step is simulated with the
datadir API (new/ record + phone entry + queue links, as every import_users.py does it), so
these tests need no chain.
"""
import hashlib
import http.client
import importlib.util
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from cic_seed.chainspec import ChainSpec
from cic_seed.cli import run
from cic_seed.datadir import Datadir
from cic_seed.meta_checks import metadata_custom_failures, metadata_failures, metadata_phone_failures
from cic_seed.meta_client import MetaClient
from cic_seed.pointers import custom_pointer, person_pointer, phone_pointer
from devnet import meta_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
CHAIN = ChainSpec.parse("evm:bloxberg:8996")
SERVER = {"X-CIC-AUTOMERGE": "server", "Content-Type": "application/json"}


def load_script(path):
    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CREATE = load_script("scripts/create_import_users.py")
IMPORT_META = load_script("cic_meta/import_meta.py")
IMPORT_PHONE = load_script("cic_meta/import_meta_phone.py")


def new_address(person) -> bytes:
    return hashlib.sha256(b"new" + person.old_address().encode()).digest()[:20]


def fake_import(datadir, start, stop):
    """Import users start..stop-1 (address order) the way import_users.py leaves them."""
    users = []
    for i, person in enumerate(datadir.iter_old()):
        if start <= i < stop:
            address = new_address(person)
            person.add_identity(CHAIN, address)
            datadir.write_new(person, address)
            datadir.write_phone(person.tel, address)
            users.append(person)
    return users


def as_users(datadir, people):
    """What verify hands to the checks (the fields the meta checks read)."""
    tags = datadir.tags()
    return [SimpleNamespace(address="0x" + new_address(p).hex(), tel=p.tel,
                            person=json.loads(datadir.new_path(new_address(p)).read_bytes()),
                            tags=tags.get(p.old_address())) for p in people]


@pytest.fixture
def meta(tmp_path):
    process, url = meta_server.spawn(tmp_path / "meta.sqlite")
    try:
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def datadir(tmp_path):
    path = tmp_path / "data"
    assert CREATE.main(["--dir", str(path), "--seed", "7", "--tag", "individual", "--tag", "farmer", "30"]) == 0
    return Datadir(path)


def call(script, argv, capsys):
    code = run(script.main, argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_person_upload_then_get_returns_the_record(meta, datadir, capsys):
    people = fake_import(datadir, 0, 20)
    code, out, err = call(IMPORT_META, ["--meta-provider", meta, str(datadir.path)], capsys)
    assert code == 0, err
    assert "import_meta: 20 uploaded, 0 already there, 0 failed" in out
    assert "10 of 30 users are not imported yet" in out
    for person in people:
        address = new_address(person)
        record = json.loads(datadir.new_path(address).read_bytes())
        assert requests.get(f"{meta}/{person_pointer(address)}").json() == record
        assert requests.get(f"{meta}/{custom_pointer(address)}").json() == {"tags": ["individual", "farmer"]}
    assert list(datadir.iter_queue("person")) == []
    assert len(list(datadir.journal("meta_person").records())) == 20
    with MetaClient(meta).open() as client:
        users = as_users(datadir, people)
        assert metadata_failures(client, users) == {}
        assert metadata_custom_failures(client, users) == {}


def test_rerun_writes_nothing(meta, datadir, capsys, tmp_path):
    people = fake_import(datadir, 0, 10)
    assert call(IMPORT_META, ["--meta-provider", meta, str(datadir.path)], capsys)[0] == 0
    counting = Proxy(meta).start()
    try:
        code, out, _ = call(IMPORT_META, ["--meta-provider", counting.url, str(datadir.path)], capsys)
        assert code == 0 and "0 uploaded, 0 already there" in out
        for person in people:  # a crash between journal and unlink leaves the links: still no write
            datadir.queue_person(new_address(person))
        code, out, _ = call(IMPORT_META, ["--meta-provider", counting.url, str(datadir.path)], capsys)
        assert code == 0 and "0 uploaded, 10 already there" in out
        assert counting.writes == 0
        assert list(datadir.iter_queue("person")) == []
        # a changed record is written again
        person = people[0]
        person.location = {"area_name": "Changed"}
        datadir.write_new(person, new_address(person))
        code, out, _ = call(IMPORT_META, ["--meta-provider", counting.url, str(datadir.path)], capsys)
        assert "1 uploaded" in out and counting.writes == 4  # person + custom, POST + PUT each
        got = requests.get(f"{meta}/{person_pointer(new_address(person))}").json()
        assert got["location"] == {"area_name": "Changed"}
    finally:
        counting.stop()


def test_resync_after_the_server_lost_its_data(datadir, tmp_path, capsys):
    people = fake_import(datadir, 0, 8)
    first, url = meta_server.spawn(tmp_path / "first.sqlite")
    try:
        assert call(IMPORT_META, ["--meta-provider", url, str(datadir.path)], capsys)[0] == 0
        assert call(IMPORT_PHONE, ["--meta-provider", url, str(datadir.path)], capsys)[0] == 0
    finally:
        first.terminate()
        first.wait(10)
    fresh, url = meta_server.spawn(tmp_path / "fresh.sqlite")
    try:
        code, out, _ = call(IMPORT_META, ["--meta-provider", url, str(datadir.path)], capsys)
        assert "0 uploaded" in out  # the queue is empty: a plain re-run cannot know
        for script in (IMPORT_META, IMPORT_PHONE):
            code, out, err = call(script, ["--resync", "--meta-provider", url, str(datadir.path)], capsys)
            assert code == 0 and "8 uploaded, 0 already there" in out, err
        counting = Proxy(url).start()
        try:
            for script in (IMPORT_META, IMPORT_PHONE):
                code, out, _ = call(script, ["--resync", "--meta-provider", counting.url, str(datadir.path)], capsys)
                assert code == 0 and "0 uploaded, 8 already there" in out
        finally:
            counting.stop()
        assert counting.writes == 0
        with MetaClient(url).open() as client:
            users = as_users(datadir, people)
            assert metadata_failures(client, users) == {}
            assert metadata_phone_failures(client, users) == {}
            assert metadata_custom_failures(client, users) == {}
        assert (datadir.path / "new").is_dir() and len(list((datadir.path / "new").rglob("*.json"))) == 8
        code, _, err = call(IMPORT_META, ["--resync", "--follow", "--meta-provider", url, str(datadir.path)], capsys)
        assert code == 2 and "without --follow" in err
    finally:
        fresh.terminate()
        fresh.wait(10)


def test_n_stops_after_n_users(meta, datadir, capsys):
    fake_import(datadir, 0, 20)
    code, out, _ = call(IMPORT_META, ["--meta-provider", meta, str(datadir.path), "5"], capsys)
    assert code == 0 and "5 uploaded" in out
    assert len(list(datadir.iter_queue("person"))) == 15


def test_follow_waits_for_import_users(meta, datadir):
    fake_import(datadir, 0, 5)
    process = subprocess.Popen([sys.executable, str(ROOT / "cic_meta/import_meta.py"), "--follow",
                                "--meta-provider", meta, str(datadir.path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        for start in range(5, 30, 5):
            time.sleep(0.3)
            assert process.poll() is None, process.communicate()
            fake_import(datadir, start, start + 5)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "30 uploaded" in out and "not imported yet" not in out
    assert list(datadir.iter_queue("person")) == []


def test_phone_pointers(meta, datadir, capsys):
    people = fake_import(datadir, 0, 10)
    ussd_user = people[3]  # imported through cic_ussd: its pointer exists, without 0x, lower case
    ussd_ptr = phone_pointer(ussd_user.tel)
    _write(meta, ussd_ptr, "ab" * 20)
    same_user = people[4]  # pointer already right (e.g. journal lost): counts as already there
    _write(meta, phone_pointer(same_user.tel), "0x" + new_address(same_user).hex())
    code, out, err = call(IMPORT_PHONE, ["--meta-provider", meta, str(datadir.path)], capsys)
    assert code == 0, err
    assert "import_meta_phone: 8 uploaded, 1 already there, 1 left alone" in out
    assert requests.get(f"{meta}/{ussd_ptr}").json() == "ab" * 20  # never overwritten
    for person in people:
        if person is not ussd_user and person is not same_user:
            got = requests.get(f"{meta}/{phone_pointer(person.tel)}").json()
            assert got == new_address(person).hex().upper()
    with MetaClient(meta).open() as client:
        failures = metadata_phone_failures(client, as_users(datadir, people))
    assert list(failures) == ["0x" + new_address(ussd_user).hex()]
    code, out, _ = call(IMPORT_PHONE, ["--meta-provider", meta, str(datadir.path)], capsys)
    assert "0 uploaded, 0 already there" in out


def test_verify_checks_find_wrong_documents(meta, datadir, capsys):
    people = fake_import(datadir, 0, 3)
    assert call(IMPORT_META, ["--meta-provider", meta, str(datadir.path)], capsys)[0] == 0
    users = as_users(datadir, people)
    other = dict(users[0].person, gender="tampered")
    _write(meta, person_pointer(users[0].address), other)
    _write(meta, custom_pointer(users[1].address), {"tags": ["individual"]})
    with MetaClient(meta).open() as client:
        assert metadata_failures(client, users) == {users[0].address: "person metadata differs from the new/ "
                                                                      "record in gender"}
        assert metadata_custom_failures(client, users) == {users[1].address: "custom metadata lacks the tags farmer"}
        missing = metadata_phone_failures(client, users)
    assert set(missing) == {u.address for u in users}
    assert "no phone pointer for +254" in missing[users[0].address]


def test_server_down_is_one_line_naming_the_url(datadir, capsys):
    fake_import(datadir, 0, 2)
    url = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    code, out, err = call(IMPORT_META, ["--meta-provider", url, str(datadir.path)], capsys)
    assert code == 1
    assert err.count("\n") == 1 and f"cic-meta at {url} is not reachable" in err
    assert time.monotonic() - started < 15
    assert len(list(datadir.iter_queue("person"))) == 2


def test_5xx_answers_are_retried(meta, datadir, capsys):
    people = fake_import(datadir, 0, 10)
    flaky = Proxy(meta, fail=lambda n, method, path: n % 3 == 0 and 503).start()
    try:
        code, out, err = call(IMPORT_META, ["--meta-provider", flaky.url, str(datadir.path)], capsys)
        code2, _, err2 = call(IMPORT_PHONE, ["--meta-provider", flaky.url, str(datadir.path)], capsys)
    finally:
        flaky.stop()
    assert (code, code2) == (0, 0), err + err2
    assert flaky.failed > 10
    with MetaClient(meta).open() as client:
        users = as_users(datadir, people)
        assert metadata_failures(client, users) == {} and metadata_phone_failures(client, users) == {}


def test_4xx_names_the_user_and_pointer_and_keeps_it_queued(meta, datadir, capsys):
    people = fake_import(datadir, 0, 6)
    bad = new_address(people[2])
    bad_ptr = person_pointer(bad)
    refusing = Proxy(meta, fail=lambda n, method, path: method == "PUT" and bad_ptr in path and 403).start()
    try:
        code, out, err = call(IMPORT_META, ["--meta-provider", refusing.url, str(datadir.path)], capsys)
    finally:
        refusing.stop()
    assert code == 1
    assert "5 uploaded" in out and "1 failed" in out
    assert f"person {bad.hex().upper()}" in err and bad_ptr in err and "HTTP 403" in err
    assert [p.name for p in datadir.iter_queue("person")] == [f"{bad.hex().upper()}.json"]
    code, out, _ = call(IMPORT_META, ["--meta-provider", meta, str(datadir.path)], capsys)
    assert code == 0 and "1 uploaded" in out


def test_dangling_queue_link_is_reported_and_the_rest_uploaded(meta, datadir, capsys):
    people = fake_import(datadir, 0, 4)
    datadir.new_path(new_address(people[1])).unlink()
    code, out, err = call(IMPORT_META, ["--meta-provider", meta, str(datadir.path)], capsys)
    assert code == 1
    assert "3 uploaded" in out
    assert "cannot read the queued record" in err and "run again" in err
    broken = next(datadir.iter_queue("phone"))
    broken.resolve().write_text("not an address")
    code, out, err = call(IMPORT_PHONE, ["--meta-provider", meta, str(datadir.path)], capsys)
    assert code == 1 and "3 uploaded" in out
    assert f"phone {broken.name}: corrupt phone entry" in err


@pytest.mark.parametrize("options, count, message", [
    ([], "0", "N (user count) must be a whole number of at least 1"),
    ([], "many", "N (user count) must be a whole number of at least 1"),
    (["--workers", "0"], None, "--workers must be a whole number of at least 1"),
])
def test_bad_arguments(datadir, capsys, options, count, message):
    for script in (IMPORT_META, IMPORT_PHONE):
        argv = options + ["--meta-provider", "http://127.0.0.1:1", str(datadir.path)] + ([count] if count else [])
        code, _, err = call(script, argv, capsys)
        assert code == 2 and message in err and err.count("\n") == 1


def test_incomplete_datadir_and_bad_url(tmp_path, datadir, capsys):
    code, _, err = call(IMPORT_META, ["--meta-provider", "http://127.0.0.1:1", str(tmp_path / "nothing")], capsys)
    assert code == 2 and "holds no complete generation" in err
    code, _, err = call(IMPORT_META, ["--meta-provider", "ftp://example.org", str(datadir.path)], capsys)
    assert code == 2 and "is not an http(s) URL" in err


def test_signed_upload(meta, datadir, tmp_path, capsys, monkeypatch):
    gnupg = pytest.importorskip("gnupg")
    home = tmp_path / "gpg"
    home.mkdir(mode=0o700)
    gpg = gnupg.GPG(gnupghome=str(home))
    key = gpg.gen_key(gpg.gen_key_input(key_type="EDDSA", key_curve="ed25519", key_usage="sign",
                                        name_email="seeder@example.org", passphrase="secret"))
    armored = gpg.export_keys(key.fingerprint, secret=True, passphrase="secret")
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
    (tmp_path / "key.asc").write_text(armored)
    monkeypatch.setenv("PGP_SIGN", "true")
    monkeypatch.setenv("PGP_PRIVATE_KEY_FILE", str(tmp_path / "key.asc"))
    monkeypatch.setenv("PGP_PASSPHRASE", "secret")
    people = fake_import(datadir, 0, 2)
    code, out, err = call(IMPORT_META, ["--meta-provider", meta, str(datadir.path)], capsys)
    assert code == 0, err
    assert "secret" not in out + err
    ptr = person_pointer(new_address(people[0]))
    envelope = requests.get(f"{meta}/{ptr}", headers={"X-CIC-AUTOMERGE": "client"}).json()
    from devnet.meta_automerge import load_payload
    signature = load_payload(envelope["payload"])["signature"]
    assert "BEGIN PGP SIGNATURE" in signature["data"]
    assert gpg.verify(signature["data"]).valid
    monkeypatch.setenv("PGP_PASSPHRASE", "wrong")
    fake_import(datadir, 2, 3)
    code, _, err = call(IMPORT_META, ["--meta-provider", meta, str(datadir.path)], capsys)
    assert code == 2 and "check PGP_PASSPHRASE" in err and "wrong" not in err


# --- helpers ---

def _write(url, ptr, value):
    r = requests.post(f"{url}/{ptr}", data=json.dumps(value), headers=SERVER)
    s = {"digest": r.json()["digest"]}
    assert requests.put(f"{url}/{ptr}", data=json.dumps({"m": r.text, "s": s}), headers=SERVER).status_code == 200


def _closed_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Proxy:
    """A reverse proxy in front of the meta server that answers ``fail(n, method, path)`` (a
    status) instead of forwarding when that is truthy, and counts forwarded writes."""

    def __init__(self, upstream, fail=None):
        self.upstream = upstream.split("//")[1]
        self.fail = fail or (lambda n, method, path: None)
        self.count = 0
        self.failed = 0
        self.writes = 0
        self.lock = threading.Lock()
        self.server = None

    def start(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy.lock:
                    proxy.count += 1
                    status = proxy.fail(proxy.count, self.command, self.path)
                    proxy.failed += bool(status)
                    proxy.writes += not status and self.command in ("POST", "PUT")
                if status:
                    self.send_response(status)
                    self.send_header("Content-Length", "4")
                    self.end_headers()
                    self.wfile.write(b"nope")
                    return
                connection = http.client.HTTPConnection(proxy.upstream, timeout=10)
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "x-cic-automerge")}
                connection.request(self.command, self.path, body=body or None, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
                connection.close()
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.getheader("Content-Type", "text/plain"))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server.server_address[1]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
