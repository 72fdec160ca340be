"""The devnet cic-meta server over real HTTP: the protocol, bad input, storage."""
import hashlib
import json
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from cic_seed.pointers import person_pointer, phone_pointer
from devnet import meta_server

MAX = meta_server.MAX_BODY
pytestmark = pytest.mark.integration

SERVER = {"X-CIC-AUTOMERGE": "server", "Content-Type": "application/json"}
CLIENT = {"X-CIC-AUTOMERGE": "client"}
ADDRESS = "c1912fee45d61c87cc5ea59dae31190fffff232d"
PTR = person_pointer(ADDRESS)
PERSON = {"date_registered": 1620000000, "gender": "other",
          "identities": {"evm": {"oldchain:1": ["0x" + ADDRESS]}},
          "location": {"area_name": "Mombasa"}, "products": ["fish"], "vcard": "QkVHSU4="}


@pytest.fixture
def meta(tmp_path):
    process, url = meta_server.spawn(tmp_path / "meta.sqlite")
    try:
        yield url
    finally:
        process.terminate()
        assert process.wait(10) == 0


def write(url, ptr, value, sig=None):
    r = requests.post(f"{url}/{ptr}", data=json.dumps(value).encode(), headers=SERVER, timeout=10)
    assert r.status_code == 200, r.text
    env = r.json()
    s = sig if sig is not None else {"engine": "pgp", "algo": "sha256", "data": "", "digest": env["digest"]}
    r = requests.put(f"{url}/{ptr}", data=json.dumps({"m": r.text, "s": s}), headers=SERVER, timeout=10)
    assert r.status_code == 200, r.text
    assert r.content == b""


def test_server_merge_write_then_plain_get_returns_the_value(meta):
    assert requests.get(f"{meta}/{PTR}").status_code == 404
    write(meta, PTR, PERSON)
    r = requests.get(f"{meta}/{PTR}")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == PERSON
    assert list(r.json()) == list(PERSON)


def test_post_stores_nothing_and_answers_an_envelope(meta):
    r = requests.post(f"{meta}/{PTR}", data=json.dumps(PERSON), headers=SERVER)
    env = r.json()
    assert env["name"] == "cic" and env["digest"] and isinstance(env["payload"], str)
    assert requests.get(f"{meta}/{PTR}").status_code == 404


def test_pointer_is_lowercased_and_may_end_with_a_slash(meta):
    write(meta, PTR.upper(), PERSON)
    assert requests.get(f"{meta}/{PTR}/").json() == PERSON
    assert requests.get(f"{meta}/{PTR.upper()}").json() == PERSON


@pytest.mark.parametrize("path", ["/0x" + PTR[2:], "/" + PTR[:-1], "/" + PTR + "0", "/" + "g" * 64,
                                  "/" + PTR + "/x", "/", "/" + PTR + "?x=1"])
def test_bad_pointer_is_400(meta, path):
    assert requests.get(meta + path).status_code == 400
    assert requests.post(meta + path, data="{}", headers=SERVER).status_code == 400


@pytest.mark.parametrize("method", ["DELETE", "PATCH", "HEAD", "TRACE", "FROB"])
def test_other_methods_are_405(meta, method):
    assert requests.request(method, f"{meta}/{PTR}").status_code == 405


def test_options_answers_cors(meta):
    r = requests.options(f"{meta}/{PTR}")
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "*"


def test_mode_errors(meta):
    assert requests.get(f"{meta}/{PTR}", headers={"X-CIC-AUTOMERGE": "server"}).status_code == 400
    assert requests.get(f"{meta}/{PTR}", headers={"X-CIC-AUTOMERGE": "bogus"}).status_code == 404
    assert requests.put(f"{meta}/{PTR}", data="{}").status_code == 400
    assert requests.post(f"{meta}/{PTR}", data="{}", headers={"X-CIC-AUTOMERGE": "bogus"}).status_code == 400


def test_huge_body_is_413_and_nothing_is_stored(meta):
    r = requests.post(f"{meta}/{PTR}", data=b"[" + b"1," * 600_000 + b"1]", headers=SERVER)
    assert r.status_code == 413
    r = requests.put(f"{meta}/{PTR}", data=b"x" * (20 * 1024 * 1024), headers=SERVER)
    assert r.status_code == 413
    assert requests.get(f"{meta}/{PTR}").status_code == 404


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"", b"[" * 100_000 + b"]" * 100_000])
def test_bad_json_is_400(meta, body):
    assert requests.post(f"{meta}/{PTR}", data=body, headers=SERVER).status_code == 400
    assert requests.put(f"{meta}/{PTR}", data=body, headers=SERVER).status_code == 400


def test_server_put_validation(meta):
    env = requests.post(f"{meta}/{PTR}", data=json.dumps(PERSON), headers=SERVER)
    good_m = env.text
    cases = [
        {"m": good_m},  # missing s: the Node server answers 500
        {"m": good_m, "s": "sig"},
        {"m": json.loads(good_m), "s": {}},  # m must be a string
        {"m": "not json", "s": {}},
        {"m": json.dumps({"payload": "garbage"}), "s": {}},
        {"m": json.dumps({"no": "payload"}), "s": {}},
        ["m", "s"],
    ]
    for body in cases:
        r = requests.put(f"{meta}/{PTR}", data=json.dumps(body), headers=SERVER)
        assert r.status_code == 400, body
    assert requests.get(f"{meta}/{PTR}").status_code == 404


def test_server_put_of_an_envelope_the_server_did_not_just_offer(meta):
    """m need not be the text of the preceding POST: any loadable envelope is decoded."""
    write(meta, PTR, PERSON)
    env = requests.get(f"{meta}/{PTR}", headers=CLIENT).text
    other = person_pointer("11" * 20)
    r = requests.put(f"{meta}/{other}", data=json.dumps({"m": env, "s": {"digest": "x"}}), headers=SERVER)
    assert r.status_code == 200
    assert requests.get(f"{meta}/{other}").json() == PERSON
    reformatted = json.dumps(requests.post(f"{meta}/{other}", data=json.dumps([1, 2]), headers=SERVER).json(), indent=1)
    r = requests.put(f"{meta}/{other}", data=json.dumps({"m": reformatted, "s": {}}), headers=SERVER)
    assert r.status_code == 200 and requests.get(f"{meta}/{other}").json() == [1, 2]


def test_non_ascii_round_trip_with_exact_content_length(meta):
    value = {"name": "Bjørn Ødegård", "city": "Zürich ✓", "emoji": "🙂"}
    write(meta, PTR, value)
    r = requests.get(f"{meta}/{PTR}")
    assert int(r.headers["Content-Length"]) == len(r.content)
    assert r.json() == value
    env = requests.post(f"{meta}/{PTR}", data=json.dumps(value, ensure_ascii=False).encode(), headers=SERVER)
    assert int(env.headers["Content-Length"]) == len(env.content)


def test_phone_pointer_rewrite_works(meta):
    ptr = phone_pointer("+254712345678")
    write(meta, ptr, "AAAA" * 10)
    write(meta, ptr, "bbbb" * 10)
    assert requests.get(f"{meta}/{ptr}").json() == "bbbb" * 10


def test_a_write_replaces_the_document(meta):
    write(meta, PTR, PERSON)
    smaller = {k: v for k, v in PERSON.items() if k != "gender"}
    write(meta, PTR, smaller)
    assert requests.get(f"{meta}/{PTR}").json() == smaller


def test_client_mode_get_and_put(meta):
    write(meta, PTR, PERSON)
    env = requests.get(f"{meta}/{PTR}", headers=CLIENT)
    assert env.status_code == 200 and "payload" in env.json()
    other = person_pointer("00" * 20)
    r = requests.put(f"{meta}/{other}", data=env.text, headers=CLIENT)
    assert r.status_code == 200 and r.content == b""
    assert requests.get(f"{meta}/{other}").json() == PERSON


def test_client_mode_put_of_a_hand_built_payload(meta):
    """The recipe of the reference (section 1): one PUT {"payload": ...}, no POST."""
    root = "00000000-0000-0000-0000-000000000000"
    sig = "5a0d3b3e-0000-4000-8000-000000000001"
    ops = [["action", "set", "obj", root, "key", "id", "value", PTR],
           ["action", "set", "obj", root, "key", "timestamp", "value", 1],
           ["action", "set", "obj", root, "key", "data", "value", "6564c8"],
           ["action", "makeMap", "obj", sig],
           ["action", "set", "obj", sig, "key", "digest", "value", "W10="],
           ["action", "set", "obj", sig, "key", "data", "value", ""],
           ["action", "link", "obj", root, "key", "signature", "value", sig]]
    change = ["~#iM", ["ops", ["~#iL", [["~#iM", op] for op in ops]], "actor", "7e1d", "seq", 1,
                       "deps", ["~#iM", []], "message", "", "undoable", False]]
    body = json.dumps({"payload": json.dumps(["~#iL", [change]])})
    assert requests.put(f"{meta}/{PTR}", data=body, headers=CLIENT).status_code == 200
    assert requests.get(f"{meta}/{PTR}").json() == "6564c8"


def test_client_mode_put_refuses_bad_envelopes(meta):
    no_sig = ["~#iL", [["~#iM", ["ops", ["~#iL", [["~#iM", ["action", "set", "obj",
                                                            "00000000-0000-0000-0000-000000000000",
                                                            "key", "data", "value", 1]]]], "actor", "a"]]]]
    for body in ["nope", json.dumps({"payload": "garbage"}), json.dumps({"payload": json.dumps(no_sig)})]:
        assert requests.put(f"{meta}/{PTR}", data=body, headers=CLIENT).status_code == 403
    assert requests.get(f"{meta}/{PTR}").status_code == 404


def test_immutable_content(meta):
    r = requests.post(f"{meta}/", data=b"foo", headers={"Content-Type": "text/plain"})
    digest = hashlib.sha256(b"foo").hexdigest()
    assert (r.status_code, r.text) == (201, digest)
    assert requests.post(f"{meta}/", data=b"foo").status_code == 200
    got = requests.get(f"{meta}/{digest}")
    assert got.content == b"foo" and got.headers["Content-Type"] == "text/plain"
    assert requests.post(f"{meta}/{digest}", data=b"foo").status_code == 200
    assert requests.post(f"{meta}/{PTR}", data=b"foo").status_code == 400


def test_a_kept_alive_connection_survives_refused_requests(meta):
    """A refused request's unread body must not be taken for the next request."""
    import http.client
    host, port = meta.split("//")[1].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    attempts = [("POST", "/0xbad", b'{"a": 1}', SERVER, 400), ("PUT", f"/{PTR}", b'{"x": 1}', {}, 400),
                ("POST", f"/{PTR}", b"x" * (MAX + 1), SERVER, 413), ("GET", f"/{PTR}", b"body", {}, 404),
                ("POST", f"/{PTR}", b"[1]", SERVER, 200)]
    for method, path, body, headers, status in attempts:
        connection.request(method, path, body=body, headers=headers)
        answer = connection.getresponse()
        answer.read()
        assert answer.status == status, (method, path)
    connection.close()


@pytest.mark.parametrize("raw, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\n\r\n", 400),
    (b"GET /%s HTTP/1.1\r\nno colon here\r\n\r\n" % PTR.encode(), 400),
    (b"GET /%s HTTP/1.1\r\nX-Long: %s\r\n\r\n" % (PTR.encode(), b"a" * 9000), 431),
    (b"GET /%s HTTP/1.1\r\n%s\r\n" % (PTR.encode(), b"".join(b"X-%d: 1\r\n" % i for i in range(101))), 431),
    (b"GET /%s HTTP/1.0\r\n\r\n" % PTR.encode(), 404),
])
def test_malformed_requests_get_a_4xx(meta, raw, status):
    host, port = meta.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(raw)
        assert sock.recv(4096).split(b"\r\n")[0].split(b" ")[1] == str(status).encode()


def test_expect_100_continue(meta):
    host, port = meta.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"POST /%s HTTP/1.1\r\nHost: x\r\nX-CIC-AUTOMERGE: server\r\nContent-Length: 3\r\n"
                     b"Expect: 100-continue\r\n\r\n" % PTR.encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 100")
        sock.sendall(b"[1]")
        answer = b""
        while b"digest" not in answer:
            answer += sock.recv(65536)
        assert b" 200 " in answer.split(b"\r\n")[0]


def test_missing_content_length_is_411(meta):
    host, port = meta.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"PUT /{PTR} HTTP/1.1\r\nHost: x\r\nX-CIC-AUTOMERGE: server\r\n\r\n".encode())
        assert b" 411 " in sock.recv(4096).split(b"\r\n")[0]


def test_concurrent_writes_and_reads(meta):
    docs = {person_pointer(f"{i:040x}"): dict(PERSON, date_registered=i) for i in range(300)}
    with requests.Session() as session, ThreadPoolExecutor(16) as pool:
        def put(item):
            ptr, value = item
            r = session.post(f"{meta}/{ptr}", data=json.dumps(value), headers=SERVER)
            s = {"digest": r.json()["digest"]}
            return session.put(f"{meta}/{ptr}", data=json.dumps({"m": r.text, "s": s}), headers=SERVER).status_code
        assert set(pool.map(put, docs.items())) == {200}
        got = list(pool.map(lambda p: session.get(f"{meta}/{p}").json(), docs))
    assert got == list(docs.values())


def test_data_survives_a_restart(tmp_path):
    db = tmp_path / "meta.sqlite"
    process, url = meta_server.spawn(db)
    try:
        write(url, PTR, PERSON)
    finally:
        process.terminate()
        process.wait(10)
    process, url = meta_server.spawn(db)
    try:
        assert requests.get(f"{url}/{PTR}").json() == PERSON
    finally:
        process.terminate()
        process.wait(10)


def test_busy_port_is_a_clear_error(tmp_path, meta):
    port = meta.rsplit(":", 1)[1]
    with pytest.raises(RuntimeError, match="did not start"):
        meta_server.spawn(tmp_path / "other.sqlite", port=int(port), timeout=5)
