"""The cic-eth client side without services: the signature chain, callback replies."""
import json

import pytest

from cic_seed.celery_client import LOCK_CREATE, CicEthApi, chain_spec_dict, make_app
from cic_seed.chainspec import ChainSpec
from cic_seed.redis_callback import CallbackListener, Reply

SPEC = {"arch": "evm", "fork": "bloxberg", "network_id": 8996, "common_name": None, "custom": []}


@pytest.fixture
def api():
    return CicEthApi(make_app("redis://127.0.0.1:1", "redis://127.0.0.1:1"), queue="cic-eth")


def test_create_account_chain_is_the_real_apis(api):
    check = api.create_account_signature("evm:bloxberg:8996", "localhost:63379:0:chan")
    assert check.task == "cic_eth.admin.ctrl.check_lock"
    assert list(check.args) == ["", SPEC, LOCK_CREATE] and LOCK_CREATE == 4
    assert check.options["queue"] == "cic-eth"
    [create] = check.options["link"]
    assert create["task"] == "cic_eth.eth.account.create" and list(create["args"]) == [SPEC]
    callback, nonce = create["options"]["link"]  # the callback is linked first, as in the real Api
    assert callback["task"] == "cic_eth.callbacks.redis.redis"
    assert list(callback["args"]) == ["localhost:63379:0:chan", 0]
    assert nonce["task"] == "cic_eth.eth.nonce.reserve_nonce"
    assert list(nonce["args"]) == [SPEC, "ACCOUNT_REGISTRY_WRITER"]
    [register] = nonce["options"]["link"]
    assert register["task"] == "cic_eth.eth.account.register" and list(register["args"]) == [SPEC]
    assert {s["options"]["queue"] for s in (create, callback, nonce, register)} == {"cic-eth"}


def test_without_register_or_callback_only_the_asked_links_exist(api):
    check = api.create_account_signature(ChainSpec.parse("evm:bloxberg:8996"), None, register=False)
    [create] = check.options["link"]
    assert "link" not in create["options"]


def test_chain_spec_dict_keeps_a_given_dict():
    old = {"engine": "evm", "common_name": "bloxberg", "network_id": 8996, "tag": None}
    assert chain_spec_dict(old) is old
    assert chain_spec_dict("evm:byzantium:8996:bloxberg")["common_name"] == "bloxberg"


@pytest.mark.parametrize("result", ["26d9098f0beeb333e7091a482f3ae31fd6f13d69",
                                    "0x26d9098f0BEEb333E7091A482f3aE31fD6F13D69",
                                    "0X26D9098F0BEEB333E7091A482F3AE31FD6F13D69"])
def test_reply_address_accepts_both_forms(result):
    assert Reply("r", 0, result).address == "0x26d9098f0BEEb333E7091A482f3aE31fD6F13D69"


def test_reply_without_an_address():
    assert Reply("r", 1, "5f0a-task-id").address is None and not Reply("r", 1, None).ok
    assert Reply("r", 0, ["list"]).address is None


def test_listener_param_and_no_io_in_constructor():
    listener = CallbackListener("localhost", 63379, 2, host_callback="redis", port_callback=6379, channel="c")
    assert listener.param == "redis:6379:2:c"
    default = CallbackListener("127.0.0.1", "7000")
    assert default.param.startswith("127.0.0.1:7000:0:") and len(default.param.split(":")) == 4


def test_listener_keeps_replies_by_root_ignores_duplicates_and_junk():
    listener = CallbackListener("localhost", 1)
    message = {"type": "message", "data": json.dumps({"root_id": "a", "status": 0, "result": "ab" * 20}).encode()}
    assert listener._take(message) == Reply("a", 0, "ab" * 20)
    assert listener._take(message) is None  # a redelivered callback
    assert listener._take({"type": "message", "data": b"not json"}) is None
    assert listener._take({"type": "message", "data": b'{"status": 0}'}) is None
    assert listener.pop("a").root_id == "a" and listener.pop("a") is None
    assert listener._take(message) is None  # still a duplicate after it was dealt with
