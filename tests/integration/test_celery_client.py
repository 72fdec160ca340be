"""The cic-eth client side against a real redis of its own (no worker): the wire format of the
messages, the callback listener, and the errors a user sees when a service is missing."""
import base64
import json
import socket
import time
import uuid

import pytest
import redis

from cic_seed.celery_client import CicEthApi, make_app
from cic_seed.errors import ServiceUnavailable
from cic_seed.redis_callback import CallbackListener
from devnet.redis_server import RedisService, build_command

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

SPEC = {"arch": "evm", "fork": "bloxberg", "network_id": 8996, "common_name": None, "custom": []}


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory):
    state = tmp_path_factory.mktemp("redis")
    port = free_port()
    service = RedisService("redis", build_command(port, state), state, port, port_key="REDIS_PORT")
    service.start(timeout=20)
    try:
        yield port
    finally:
        assert service.stop()


@pytest.fixture
def client(redis_port):
    connection = redis.Redis(port=redis_port)
    yield connection
    connection.close()


def api_on(port, queue):
    url = f"redis://127.0.0.1:{port}/0"
    return CicEthApi(make_app(url, url), queue=queue)


def publish(client, channel, root_id, result, status=0):
    client.publish(channel, json.dumps({"root_id": root_id, "status": status, "result": result}))


def test_create_account_message_on_the_wire_is_json_protocol_2_with_the_chain_embedded(redis_port, client):
    queue = "q-" + uuid.uuid4().hex[:6]
    root = api_on(redis_port, queue).create_account(SPEC, "h:1:0:chan")
    [raw] = client.lrange(queue, 0, -1)
    message = json.loads(raw)
    assert message["content-type"] == "application/json"
    headers = message["headers"]
    assert headers["task"] == "cic_eth.admin.ctrl.check_lock" and headers["id"] == root
    assert headers["root_id"] == root
    args, kwargs, embed = json.loads(base64.b64decode(message["body"]))
    assert args == ["", SPEC, 4] and kwargs == {}
    [create] = embed["callbacks"]
    assert create["task"] == "cic_eth.eth.account.create" and create["args"] == [SPEC]
    assert [link["task"] for link in create["options"]["link"]] == ["cic_eth.callbacks.redis.redis",
                                                                    "cic_eth.eth.nonce.reserve_nonce"]


def test_an_environment_broker_url_does_not_override_the_given_one(redis_port, client, monkeypatch):
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    queue = "q-" + uuid.uuid4().hex[:6]
    api_on(redis_port, queue).create_account(SPEC, None)
    assert client.llen(queue) == 1


def test_listener_matches_many_replies_on_one_channel_by_root_id_in_any_order(redis_port, client):
    with CallbackListener("127.0.0.1", redis_port, 0) as listener:
        roots = [str(uuid.uuid4()) for _ in range(50)]
        addresses = ["%040x" % (0xabc0 + i) for i in range(50)]
        # published at once after open(): none may be lost, and they arrive before anyone waits
        for i in reversed(range(50)):
            result = addresses[i] if i % 2 else "0x" + addresses[i].upper()  # both forms cic-eth has sent
            publish(client, listener.channel, roots[i], result)
        publish(client, listener.channel, roots[3], addresses[3])  # a redelivered callback
        publish(client, listener.channel, "someone-else", "00" * 20)
        client.publish(listener.channel, "not json")
        replies = listener.wait(roots, 10)
        assert len(replies) == 50
        for root, address in zip(roots, addresses):
            assert replies[root].ok and replies[root].address.lower() == "0x" + address
        assert "someone-else" in listener.replies


def test_listener_reports_error_status_and_times_out_without_losing_later_replies(redis_port, client):
    with CallbackListener("127.0.0.1", redis_port, 0) as listener:
        publish(client, listener.channel, "failed-root", "uuid-of-the-failed-task", status=1)
        started = time.monotonic()
        assert listener.wait(["failed-root", "never"], 0.5) == {"failed-root": listener.replies["failed-root"]}
        assert 0.4 < time.monotonic() - started < 3
        assert not listener.replies["failed-root"].ok
        publish(client, listener.channel, "never", "ab" * 20)
        assert listener.wait(["never"], 5)["never"].address


def test_listener_param_names_the_callback_host_and_the_subscribed_channel(redis_port):
    with CallbackListener("127.0.0.1", redis_port, 0, host_callback="redis", port_callback=6379) as listener:
        host, port, db, channel = listener.param.split(":")
        assert (host, port, db, channel) == ("redis", "6379", "0", listener.channel)


def test_unreachable_redis_for_callbacks_names_it_and_the_fix():
    with pytest.raises(ServiceUnavailable, match=r"cannot reach redis at 127.0.0.1:1 .*REDIS_HOST/REDIS_PORT"):
        CallbackListener("127.0.0.1", 1, 0).open()


def test_unreachable_broker_names_the_url_and_the_fix():
    api = api_on(1, "cic-eth")
    with pytest.raises(ServiceUnavailable, match=r"cannot reach the celery broker at redis://127.0.0.1:1/0"):
        api.check()
    with pytest.raises(ServiceUnavailable, match=r"CELERY_BROKER_URL/--broker-url"):
        api.create_account(SPEC, "h:1:0:c")


def test_have_account_without_a_worker_times_out_with_a_hint(redis_port):
    api = api_on(redis_port, "nobody-listens-" + uuid.uuid4().hex[:6])
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match=r"no answer from cic-eth on queue 'nobody-listens-.*' within 1 s"):
        api.have_account("ab" * 20, SPEC, timeout=1)
    assert time.monotonic() - started < 10
