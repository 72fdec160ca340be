"""The Automerge save() subset the devnet meta server reads and writes."""
import base64
import json

import pytest

from devnet.meta_automerge import ROOT, PayloadError, envelope, load_payload

PERSON = {
    "date_registered": 1620000000,
    "gender": "female",
    "identities": {"evm": {"oldchain:1": ["0xAbC"], "bloxberg:8996": ["0xdef"]}},
    "location": {"area_name": "Kilifi", "latitude": -3.5, "longitude": 39.8},
    "products": ["maize", "milk", "fish"],
    "vcard": "QkVHSU46VkNBUkQ=",
    "date_of_birth": {"year": 1990, "month": 2},
}


@pytest.mark.parametrize("data", [
    PERSON,
    "6564e2f8a2b6b3c07f0d3e1a1c6b3a0a9f3c1c8",
    {"tags": ["individual", "ussd"]},
    {"empty": {}, "nothing": [], "none": None, "yes": True, "no": False, "zero": 0, "big": 2 ** 60},
    {"~tilde": "~x", "^caret": "^0", "`tick": "`y", "~#iM": ["~#iL", "^ "]},
    {"nested": [[1, [2, {"a": [3]}]], {"b": {"c": {"d": "e"}}}]},
    {"name": "Bjørn Ødegård ✓"},
], ids=["person", "phone", "custom", "scalars", "escapes", "nested", "unicode"])
def test_envelope_round_trip(data):
    env = envelope({"id": "ab" * 32, "timestamp": 1, "data": data})
    root = load_payload(env["payload"])
    assert root["data"] == data
    assert root["id"] == "ab" * 32
    assert root["signature"] == {"digest": env["digest"]}


def test_round_trip_keeps_key_order():
    root = load_payload(envelope({"data": PERSON})["payload"])
    assert list(root["data"]) == list(PERSON)


def test_digest_of_primitive_data_is_empty_list():
    env = envelope({"id": "00" * 32, "timestamp": 1, "data": "+254700000000"})
    assert env["digest"] == "W10="


def test_digest_lists_the_link_ops():
    env = envelope({"id": "00" * 32, "data": {"a": [1]}})
    pairs = json.loads(base64.b64decode(env["digest"]))
    assert len(pairs) == 2 and pairs[-1][0] == ROOT


def test_envelope_fields():
    env = envelope({"data": 1})
    assert env["name"] == "cic" and env["version"] == "1"
    assert env["ext"]["engine"] == {"name": "automerge", "version": "0.14.1"}
    assert isinstance(env["payload"], str)


def _op(*kv):
    return ["^1", list(kv)]


def test_reads_a_payload_with_transit_cache_refs():
    """The shape a real Automerge 0.14 writer produces: ^0 = ~#iL and ^1 = ~#iM."""
    sig = "11111111-1111-1111-1111-111111111111"
    ops = [
        ["~#iM", ["action", "set", "obj", ROOT, "key", "id", "value", "ff" * 32]],
        _op("action", "set", "obj", ROOT, "key", "timestamp", "value", 1650000000),
        _op("action", "makeMap", "obj", sig),
        _op("action", "set", "obj", sig, "key", "digest", "value", "W10="),
        _op("action", "set", "obj", sig, "key", "data", "value", ""),
        _op("action", "link", "obj", ROOT, "key", "signature", "value", sig),
        _op("action", "set", "obj", ROOT, "key", "data", "value", "~~starts with tilde"),
    ]
    change = ["~#iM", ["ops", ["~#iL", ops], "actor", "a1", "seq", 1, "deps", ["^1", []],
                       "message", "init", "undoable", False]]
    payload = json.dumps(["^0", [change]]).replace('["^0", [["~#iM"', '["~#iL", [["~#iM"', 1)
    root = load_payload(payload)
    assert root == {"id": "ff" * 32, "timestamp": 1650000000, "signature": {"digest": "W10=", "data": ""},
                    "data": "~starts with tilde"}


def test_replays_several_changes_in_log_order():
    lst = "22222222-2222-2222-2222-222222222222"

    def change(actor, ops):
        return ["~#iM", ["ops", ["~#iL", [["~#iM", op] for op in ops]], "actor", actor, "seq", 1,
                         "deps", ["~#iM", []], "message", "", "undoable", False]]

    first = change("aa", [
        ["action", "makeList", "obj", lst],
        ["action", "ins", "obj", lst, "key", "_head", "elem", 1],
        ["action", "set", "obj", lst, "key", "aa:1", "value", "one"],
        ["action", "ins", "obj", lst, "key", "aa:1", "elem", 2],
        ["action", "set", "obj", lst, "key", "aa:2", "value", "three"],
        ["action", "link", "obj", ROOT, "key", "data", "value", lst],
        ["action", "set", "obj", ROOT, "key", "gone", "value", 1],
    ])
    second = change("bb", [
        ["action", "ins", "obj", lst, "key", "aa:1", "elem", 3],  # newer insert after "one" comes first
        ["action", "set", "obj", lst, "key", "bb:3", "value", "two"],
        ["action", "del", "obj", ROOT, "key", "gone"],
        ["action", "ins", "obj", lst, "key", "_head", "elem", 4],
        ["action", "set", "obj", lst, "key", "bb:4", "value", "zero"],
        ["action", "del", "obj", lst, "key", "bb:4"],
    ])
    root = load_payload(json.dumps(["~#iL", [first, second]]))
    assert root == {"data": ["one", "two", "three"]}


@pytest.mark.parametrize("payload", [
    "", "not json", "{}", "[]x", '["~#iL", [1]]', '["~#iL", [["~#iM", ["ops", 5]]]]',
    '["~#iL", [["~#iM", ["ops", ["~#iL", [["~#iM", ["action", "explode", "obj", "x"]]]]]]]]',
    '["~#iL", [["~#iM", ["ops", ["~#iL", [["~#iM", ["action", "set", "obj", "nope", "key", "a"]]]]]]]]',
    '["~#iL", [["~#iM", ["ops", ["~#iL", [["~#iM", ["action", "link", "obj", "00000000-0000-0000-0000-000000000000", '
    '"key", "a", "value", "missing"]]]]]]]]',
    '["^5", []]', '["~#weird", 1]', "[" * 5000 + "]" * 5000,
])
def test_bad_payloads_raise_payload_error(payload):
    with pytest.raises(PayloadError):
        load_payload(payload)


def test_link_cycle_is_refused():
    a, b = "a" * 8, "b" * 8
    ops = [["action", "makeMap", "obj", a], ["action", "makeMap", "obj", b],
           ["action", "link", "obj", a, "key", "b", "value", b], ["action", "link", "obj", b, "key", "a", "value", a],
           ["action", "link", "obj", ROOT, "key", "data", "value", a]]
    change = ["~#iM", ["ops", ["~#iL", [["~#iM", op] for op in ops]], "actor", "x"]]
    with pytest.raises(PayloadError):
        load_payload(json.dumps(["~#iL", [change]]))


# Automerge 0.14.2 itself (npm) made this save(): a change setting id, timestamp, data
# {tags: ["individual"], n: {k: 1}} and signature, then a change that does
# tags.insertAt(0, "ussd"), tags.push("~x"), delete data.n and data.f = 1.5.
REAL_SAVE = (
    "[\"~#iL\",[[\"~#iM\",[\"ops\",[\"^0\",[[\"^1\",[\"action\",\"set\",\"obj\",\"00000000-0000-0000-0000-000000000000\",\"k"
    "ey\",\"id\",\"value\",\"ee\"]],[\"^1\",[\"action\",\"set\",\"obj\",\"00000000-0000-0000-0000-000000000000\",\"key\",\"ti"
    "mestamp\",\"value\",1]],[\"^1\",[\"action\",\"makeMap\",\"obj\",\"518f49ce-50f8-458f-b97d-6ed1c53fe8f3\"]],[\"^1\","
    "[\"action\",\"makeList\",\"obj\",\"a92e3ad9-9a13-43b0-8b68-249eac0bfc58\"]],[\"^1\",[\"action\",\"ins\",\"obj\",\"a92"
    "e3ad9-9a13-43b0-8b68-249eac0bfc58\",\"key\",\"_head\",\"elem\",1]],[\"^1\",[\"action\",\"set\",\"obj\",\"a92e3ad9-9a"
    "13-43b0-8b68-249eac0bfc58\",\"key\",\"8edd8fff-cd75-4032-9bd8-eb4977402474:1\",\"value\",\"individual\"]],[\"^"
    "1\",[\"action\",\"link\",\"obj\",\"518f49ce-50f8-458f-b97d-6ed1c53fe8f3\",\"key\",\"tags\",\"value\",\"a92e3ad9-9a13"
    "-43b0-8b68-249eac0bfc58\"]],[\"^1\",[\"action\",\"makeMap\",\"obj\",\"e99531e3-8423-4aa5-8ad6-caf33818c2e6\"]],"
    "[\"^1\",[\"action\",\"set\",\"obj\",\"e99531e3-8423-4aa5-8ad6-caf33818c2e6\",\"key\",\"k\",\"value\",1]],[\"^1\",[\"act"
    "ion\",\"link\",\"obj\",\"518f49ce-50f8-458f-b97d-6ed1c53fe8f3\",\"key\",\"n\",\"value\",\"e99531e3-8423-4aa5-8ad6-"
    "caf33818c2e6\"]],[\"^1\",[\"action\",\"link\",\"obj\",\"00000000-0000-0000-0000-000000000000\",\"key\",\"data\",\"va"
    "lue\",\"518f49ce-50f8-458f-b97d-6ed1c53fe8f3\"]],[\"^1\",[\"action\",\"makeMap\",\"obj\",\"f6f12dfc-8074-42ad-b7"
    "81-3f63a6791c02\"]],[\"^1\",[\"action\",\"set\",\"obj\",\"f6f12dfc-8074-42ad-b781-3f63a6791c02\",\"key\",\"digest\""
    ",\"value\",\"W10=\"]],[\"^1\",[\"action\",\"set\",\"obj\",\"f6f12dfc-8074-42ad-b781-3f63a6791c02\",\"key\",\"data\",\"v"
    "alue\",\"\"]],[\"^1\",[\"action\",\"link\",\"obj\",\"00000000-0000-0000-0000-000000000000\",\"key\",\"signature\",\"va"
    "lue\",\"f6f12dfc-8074-42ad-b781-3f63a6791c02\"]]]],\"actor\",\"8edd8fff-cd75-4032-9bd8-eb4977402474\",\"seq\""
    ",1,\"deps\",[\"^1\",[]],\"message\",\"init\"]],[\"^1\",[\"ops\",[\"^0\",[[\"^1\",[\"action\",\"ins\",\"obj\",\"a92e3ad9-9a1"
    "3-43b0-8b68-249eac0bfc58\",\"key\",\"_head\",\"elem\",2]],[\"^1\",[\"action\",\"set\",\"obj\",\"a92e3ad9-9a13-43b0-8"
    "b68-249eac0bfc58\",\"key\",\"8edd8fff-cd75-4032-9bd8-eb4977402474:2\",\"value\",\"ussd\"]],[\"^1\",[\"action\",\"i"
    "ns\",\"obj\",\"a92e3ad9-9a13-43b0-8b68-249eac0bfc58\",\"key\",\"8edd8fff-cd75-4032-9bd8-eb4977402474:1\",\"ele"
    "m\",3]],[\"^1\",[\"action\",\"set\",\"obj\",\"a92e3ad9-9a13-43b0-8b68-249eac0bfc58\",\"key\",\"8edd8fff-cd75-4032-"
    "9bd8-eb4977402474:3\",\"value\",\"~~x\"]],[\"^1\",[\"action\",\"del\",\"obj\",\"518f49ce-50f8-458f-b97d-6ed1c53fe8"
    "f3\",\"key\",\"n\"]],[\"^1\",[\"action\",\"set\",\"obj\",\"518f49ce-50f8-458f-b97d-6ed1c53fe8f3\",\"key\",\"f\",\"value\""
    ",1.5]]]],\"actor\",\"8edd8fff-cd75-4032-9bd8-eb4977402474\",\"seq\",2,\"deps\",[\"^1\",[]],\"message\",\"edit\"]]]"
    "]"
)
REAL_DOC = {"id": "ee", "timestamp": 1, "data": {"tags": ["ussd", "individual", "~x"], "f": 1.5}, "signature": {"digest": "W10=", "data": ""}}


def test_reads_a_save_made_by_automerge_itself():
    assert load_payload(REAL_SAVE) == REAL_DOC
