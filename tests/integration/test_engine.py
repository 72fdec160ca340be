"""The devnet's cic-eth engine against real redis, a real celery worker and real anvil with the
real CIC contracts: what a seeding client (the real cic-eth Api or ours) sees."""
import json
import os
import socket
import subprocess
import threading
import time
import uuid

import celery
import pytest
import redis

from cic_seed.celery_client import api_from_settings
from cic_seed.errors import ServiceUnavailable
from cic_seed.redis_callback import listener_from_settings
from cic_seed.registry import connect_from_settings
from cic_seed.rpc import RpcClient
from cic_seed.signer import Signer
from cic_seed.transactions import wait_receipts
from devnet import engine
from devnet.engine_chain import ACCOUNT_REGISTRY_WRITER, CHECK, GAS_GIFTER, HAVE, NonceAllocator, address_arg
from devnet.engine_keys import KeyStore, keystore_from_settings
from devnet.process import DevnetError
from devnet.redis_server import RedisService, build_command, wait_ready

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

SPEC_2022 = {"arch": "evm", "fork": "bloxberg", "network_id": 8996, "common_name": None, "custom": []}
SPEC_2021 = {"engine": "evm", "common_name": "bloxberg", "network_id": 8996, "tag": None}


@pytest.fixture(scope="module")
def custodial(devnet_factory):
    return devnet_factory("cic_eth")


@pytest.fixture(scope="module")
def network(custodial):
    return connect_from_settings(custodial.settings)


@pytest.fixture
def pubsub(custodial):
    """A raw redis subscription on a fresh channel (subscribed before anything is sent)."""
    settings = custodial.settings
    client = redis.Redis(host="127.0.0.1", port=settings.int("REDIS_PORT"))
    sub = client.pubsub()
    channel = str(uuid.uuid4())
    sub.subscribe(channel)
    assert sub.get_message(timeout=5)["type"] == "subscribe"
    yield sub, f"127.0.0.1:{settings.int('REDIS_PORT')}:0:{channel}"
    sub.close()
    client.close()


def raw_messages(sub, count, timeout=60):
    messages, deadline = [], time.monotonic() + timeout
    while len(messages) < count and time.monotonic() < deadline:
        message = sub.get_message(timeout=0.5)
        if message and message["type"] == "message":
            messages.append(json.loads(message["data"]))
    return messages


def chain_state(network, addresses):
    """Per address: (in the accounts index, native balance, faucet still usable)."""
    calls = []
    for a in addresses:
        calls += [("eth_call", [{"to": network.accounts_index, "data": "0x" + (HAVE + address_arg(a)).hex()},
                                "latest"]),
                  ("eth_getBalance", [a, "latest"]),
                  ("eth_call", [{"to": network.faucet, "data": "0x" + (CHECK + address_arg(a)).hex()}, "latest"])]
    answers = network.rpc.batch(calls)
    return [(int(answers[i], 16) == 1, int(answers[i + 1], 16), int(answers[i + 2], 16) == 1)
            for i in range(0, len(answers), 3)]


def wait_onboarded(network, addresses, timeout=120):
    """Poll (with backoff) until every address is in the index, has gas and used the faucet."""
    deadline, delay = time.monotonic() + timeout, 0.05
    while True:
        states = chain_state(network, addresses)
        if all(have and gas > 0 and not usable for have, gas, usable in states):
            return states
        if time.monotonic() > deadline:
            return states
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


def real_api_create_account(app, chain_spec, lock_create, callback_param, queue="cic-eth"):
    """The signatures cic_eth.api.Api.create_account builds (reference cic-eth.md 1.2), by hand."""
    callback_success = celery.signature("cic_eth.callbacks.redis.redis", [callback_param, 0], queue=queue, app=app)
    s_check = celery.signature("cic_eth.admin.ctrl.check_lock", ["", chain_spec, lock_create], queue=queue, app=app)
    s_account = celery.signature("cic_eth.eth.account.create", [chain_spec], queue=queue, app=app)
    s_check.link(s_account)
    s_account.link(callback_success)
    s_nonce = celery.signature("cic_eth.eth.nonce.reserve_nonce", [chain_spec, "ACCOUNT_REGISTRY_WRITER"],
                               queue=queue, app=app)
    s_register = celery.signature("cic_eth.eth.account.register", [chain_spec], queue=queue, app=app)
    s_nonce.link(s_register)
    s_account.link(s_nonce)
    return s_check.apply_async(queue=queue)


@pytest.fixture(scope="module")
def bare_app(custodial):
    settings = custodial.settings
    app = celery.Celery(broker=settings.get("CELERY_BROKER_URL"), backend=settings.get("CELERY_RESULT_URL"),
                        set_as_current=False)
    yield app
    app.close()


@pytest.mark.parametrize("chain_spec,lock_create", [(SPEC_2022, 4), (SPEC_2021, 2)], ids=["2022", "2021"])
def test_the_real_api_message_chain_gets_the_callback_and_an_onboarded_account(
        custodial, network, bare_app, pubsub, chain_spec, lock_create):
    sub, param = pubsub
    t = real_api_create_account(bare_app, chain_spec, lock_create, param)
    [reply] = raw_messages(sub, 1)
    assert set(reply) == {"root_id", "status", "result"}
    assert reply["root_id"] == t.id and reply["status"] == 0
    address = reply["result"]
    assert len(address) == 40 and address == address.lower() and not address.startswith("0x")
    [(have, gas, usable)] = wait_onboarded(network, ["0x" + address])
    assert have, "add(A) was not mined in the AccountsIndex"
    assert gas > 0, "A has no gas left"
    assert not usable, "A did not call the faucet"
    api = api_from_settings(custodial.settings)
    assert api.have_account(address, chain_spec) == address
    assert api.have_account(Signer.generate().address, chain_spec) is None


def test_add_is_a_top_level_tx_from_the_writer_then_gas_then_give_to_from_the_account(custodial, network):
    api = api_from_settings(custodial.settings)
    with listener_from_settings(custodial.settings) as listener:
        root = api.create_account("evm:bloxberg:8996", listener.param)
        address = listener.wait([root], 60)[root].address
    wait_onboarded(network, [address])
    with keystore_from_settings(custodial.settings, custodial.state_dir) as keystore:
        writer = "0x" + keystore.role(ACCOUNT_REGISTRY_WRITER)
        gifter = "0x" + keystore.role(GAS_GIFTER)
    head = network.rpc.block_number()
    blocks = network.rpc.batch([("eth_getBlockByNumber", [hex(n), True]) for n in range(max(1, head - 60), head + 1)])
    seen = []  # (block, index, what)
    for block in blocks:
        for tx in block["transactions"]:
            if tx["to"] and tx["to"].lower() == network.accounts_index.lower() and address[2:].lower() in tx["input"]:
                assert tx["from"].lower() == writer.lower() and tx["input"].startswith("0x0a3b0a4f")
                seen.append((int(tx["blockNumber"], 16), int(tx["transactionIndex"], 16), "add"))
            elif tx["to"] and tx["to"].lower() == address.lower() and tx["from"].lower() == gifter.lower():
                seen.append((int(tx["blockNumber"], 16), int(tx["transactionIndex"], 16), "gas"))
            elif tx["from"].lower() == address.lower():
                assert tx["to"].lower() == network.faucet.lower() and tx["input"].startswith("0x63e4bff4")
                seen.append((int(tx["blockNumber"], 16), int(tx["transactionIndex"], 16), "giveTo"))
    assert [what for *_, what in sorted(seen)] == ["add", "gas", "giveTo"]
    assert seen[0][0] < seen[1][0] < seen[2][0], "each step must wait for the previous one to be mined"


def test_a_redelivered_create_of_the_same_root_id_makes_no_second_account(custodial):
    api = api_from_settings(custodial.settings)
    root = str(uuid.uuid4())
    with listener_from_settings(custodial.settings) as listener, \
            keystore_from_settings(custodial.settings, custodial.state_dir) as keystore:
        before = keystore.count()
        api.create_account(SPEC_2022, listener.param, root_id=root)
        first = listener.wait([root], 60)[root]
        listener.pop(root)
        listener._seen.discard(root)  # let the second callback through to compare
        api.create_account(SPEC_2022, listener.param, root_id=root)  # as if the broker redelivered it
        second = listener.wait([root], 60)[root]
        assert first.result == second.result
        assert keystore.count() == before + 1


def test_worker_stopped_mid_run_and_restarted_loses_nothing_and_creates_nothing_twice(custodial, network):
    settings = custodial.settings
    api = api_from_settings(settings)
    worker = engine.service(settings, custodial.state_dir)
    count = 150
    with listener_from_settings(settings) as listener, keystore_from_settings(settings, custodial.state_dir) as ks:
        before = ks.count()
        roots = [api.create_account(SPEC_2022, listener.param) for _ in range(count)]
        deadline = time.monotonic() + 60
        while len(listener.replies) < 15 and time.monotonic() < deadline:
            listener.poll(0.05)
        assert worker.stop(), "the engine was not running"
        try:
            stopped_with = len(listener.replies)
            assert stopped_with < count, "the run finished before the worker was stopped"
        finally:
            assert worker.start()
        replies = listener.wait(roots, 120)
        assert len(replies) == count, f"{count - len(replies)} creations lost (stopped after {stopped_with})"
        addresses = {r.address for r in replies.values()}
        assert len(addresses) == count
        assert ks.count() == before + count, "an account was created twice"
        assert all(ks.address_for_root(r) for r in roots)
    states = wait_onboarded(network, sorted(addresses), timeout=180)
    assert sum(1 for have, gas, usable in states if have and gas > 0 and not usable) == count


def test_refill_gas_and_gift_tasks_by_name(custodial, network, bare_app):
    """cic_eth.eth.gas.refill_gas and cic_eth.eth.account.gift, as the tracker of a real cic-eth sends them."""
    from devnet.deploy import deployer_key

    api = api_from_settings(custodial.settings)
    with listener_from_settings(custodial.settings) as listener:
        root = api.create_account(SPEC_2022, listener.param, register=False)
        address = listener.wait([root], 60)[root].address
    stranger = Signer.generate().address
    raw = bare_app.send_task("cic_eth.eth.gas.refill_gas", [stranger, SPEC_2022], queue="cic-eth").get(timeout=30)
    assert raw.startswith("0x") and len(raw) > 100
    deadline = time.monotonic() + 30
    while network.rpc.balances([stranger])[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert network.rpc.balances([stranger])[0] > 0
    # gift needs the account in the index: the index owner adds it (no tracker involved)
    owner = Signer(deployer_key())
    add = owner.sign(nonce=network.rpc.nonce(owner.address), gas_price=network.rpc.gas_price() * 2, gas=200_000,
                     to=network.accounts_index, data=bytes.fromhex("0a3b0a4f") + address_arg(address), chain_id=8996)
    network.rpc.call("eth_sendRawTransaction", ["0x" + add.raw.hex()])
    wait_receipts(network.rpc, [add.hash], timeout=30)
    [signed] = bare_app.send_task("cic_eth.eth.account.gift", [address[2:].lower(), SPEC_2022],
                                  queue="cic-eth").get(timeout=60)
    assert signed.startswith("0x")
    [(have, gas, usable)] = wait_onboarded(network, [address], timeout=30)
    assert have and gas > 0 and not usable


def test_roles_are_set_up_once_funded_and_authorised(custodial, network):
    again = engine.setup_roles(custodial.settings, custodial.state_dir)
    assert again.done == ()
    writer, gifter = again.roles[ACCOUNT_REGISTRY_WRITER], again.roles[GAS_GIFTER]
    is_writer = "0x2b29ba23" + address_arg(writer).hex()
    assert int(network.rpc.call("eth_call", [{"to": network.accounts_index, "data": is_writer}, "latest"]), 16) == 1
    assert min(network.rpc.balances([writer, gifter])) > 10 ** 18


def test_nonces_from_many_threads_are_unique_and_without_gaps(custodial):
    settings = custodial.settings
    client = redis.Redis.from_url(settings.get("CELERY_BROKER_URL"))
    allocator = NonceAllocator(client, RpcClient(settings.get("ETH_PROVIDER")), 8996)
    address = Signer.generate().address
    got, lock = [], threading.Lock()

    def work(n):
        for i in range(40):
            first = allocator.reserve(address, 1 + (i + n) % 3)
            with lock:
                got.extend(range(first, first + 1 + (i + n) % 3))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(got) == list(range(len(got)))
    client.close()


def test_a_nonce_handed_out_but_never_sent_is_filled_so_later_ones_are_mined(custodial):
    settings = custodial.settings
    rpc = RpcClient(settings.get("ETH_PROVIDER"))
    client = redis.Redis.from_url(settings.get("CELERY_BROKER_URL"))
    allocator = NonceAllocator(client, rpc, 8996)
    signer = Signer.generate()
    rpc.call("anvil_setBalance", [signer.address, hex(10 ** 18)])
    price = rpc.gas_price() * 2
    lost = allocator.reserve(signer.address)  # e.g. a worker killed between reserve and send
    later = signer.sign(nonce=allocator.reserve(signer.address), gas_price=price, gas=21000, to=signer.address,
                        chain_id=8996)
    rpc.call("eth_sendRawTransaction", ["0x" + later.raw.hex()])
    time.sleep(0.3)
    assert rpc.nonce(signer.address, "latest") == lost  # stalled behind the gap
    assert allocator.fill_gaps(signer, price) == [lost]
    deadline = time.monotonic() + 10
    while rpc.nonce(signer.address, "latest") < lost + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rpc.nonce(signer.address, "latest") == lost + 2
    client.close()


def test_keystore_on_postgresql(tmp_path):
    url = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    schema = "engine_test_" + uuid.uuid4().hex[:8]
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(url, autocommit=True, connect_timeout=2)
    except psycopg.OperationalError:
        pytest.skip(f"no PostgreSQL answers at {url}")
    admin.execute(f"CREATE SCHEMA {schema}")
    try:
        with KeyStore(f"{url}?options=-csearch_path%3D{schema}", tmp_path / "secret") as store:
            first = store.create(root_id="root")
            assert store.create(root_id="root") == first and store.have("0x" + first.upper())
            assert Signer(store.private_key(first)).address.lower() == "0x" + first
            store.set_role("GAS_GIFTER", first)
            store.set_role("GAS_GIFTER", first)
            assert store.roles() == {"GAS_GIFTER": first}
            ciphertext = admin.execute(f"SELECT key_ciphertext FROM {schema}.ethereum").fetchone()[0]
            assert store.private_key(first).hex() not in ciphertext
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


def test_a_redis_that_is_not_ours_is_reused_and_left_running(tmp_path):
    port = free_port()
    (tmp_path / "foreign" / "redis").mkdir(parents=True)
    foreign = subprocess.Popen(build_command(port, tmp_path / "foreign"), stdout=subprocess.DEVNULL)
    try:
        service = RedisService("redis", build_command(port, tmp_path / "state"), tmp_path / "state", port,
                               ready=lambda: True, port_key="REDIS_PORT")
        assert wait_ready(port)
        assert service.start() is False
        assert service.reused() and not service.running()
        assert service.stop() is False
        assert foreign.poll() is None and wait_ready(port, 1)
    finally:
        foreign.terminate()
        foreign.wait(10)


def test_a_port_held_by_something_that_is_not_redis_is_a_clear_error(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        service = RedisService("redis", build_command(port, tmp_path), tmp_path, port, port_key="REDIS_PORT")
        with pytest.raises(DevnetError, match=f"port {port} is taken by something that is not redis"):
            service.start(timeout=2)
    assert not (tmp_path / "redis.pid").exists()


def test_an_unreachable_broker_names_the_url_and_the_fix(custodial):
    from cic_seed.celery_client import CicEthApi, make_app

    api = CicEthApi(make_app("redis://127.0.0.1:1/0", "redis://127.0.0.1:1/0"))
    with pytest.raises(ServiceUnavailable, match=r"redis://127.0.0.1:1/0.*make devnet-up"):
        api.create_account(SPEC_2022, "127.0.0.1:1:0:x")


def _cpu_seconds(pid):
    """utime + stime of a process and its children (from /proc)."""
    total = 0
    for p in [pid, *os.popen(f"pgrep -P {pid}").read().split()]:
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


@pytest.mark.bench
def test_bench_cic_eth_custodial_accounts_end_to_end(custodial, network):
    """BENCH_ACCOUNTS (2000) accounts through the real client and engine: created (callback), added,
    gas, giveTo. Prints the rates and the CPU each process spent per account."""
    count = int(os.environ.get("BENCH_ACCOUNTS", "2000"))
    window = int(os.environ.get("BENCH_WINDOW", "500"))
    settings = custodial.settings
    api = api_from_settings(settings)
    pids = {name: int((custodial.state_dir / f"{name}.pid").read_text().split()[0])
            for name in ("anvil", "redis", "engine")}
    cpu_before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    client_before = time.process_time()
    entry_count = "0x0cbb0f83"
    entries = int(network.rpc.call("eth_call", [{"to": network.accounts_index, "data": entry_count}, "latest"]), 16)
    started = time.monotonic()
    with listener_from_settings(settings) as listener:
        roots, waiting = [], set()
        while len(roots) < count or waiting:
            while len(roots) < count and len(waiting) < window:
                roots.append(api.create_account(SPEC_2022, listener.param))
                waiting.add(roots[-1])
            for reply in listener.poll(0.05):
                waiting.discard(reply.root_id)
            assert time.monotonic() - started < 1200, f"{len(waiting)} callbacks missing"
        called_back = time.monotonic() - started
        addresses = [listener.replies[r].address for r in roots]
    deadline = time.monotonic() + 600
    while int(network.rpc.call("eth_call", [{"to": network.accounts_index, "data": entry_count}, "latest"]),
              16) < entries + count and time.monotonic() < deadline:
        time.sleep(0.2)
    added = time.monotonic() - started
    states = wait_onboarded(network, addresses[-20:], timeout=600)  # the tracker works in arrival order
    onboarded = time.monotonic() - started
    states = wait_onboarded(network, addresses, timeout=120)
    assert all(have and gas > 0 and not usable for have, gas, usable in states)
    client_cpu = time.process_time() - client_before
    cpu = {name: _cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    print(f"\n{count} custodial accounts: callbacks {count / called_back:.1f}/s ({called_back:.1f} s), "
          f"added {count / added:.1f}/s, end to end (add, gas, giveTo mined) {count / onboarded:.1f}/s "
          f"({onboarded:.1f} s)")
    print("CPU ms per account: " + ", ".join(f"{name} {1000 * seconds / count:.1f}"
                                              for name, seconds in {**cpu, "client": client_cpu}.items()))
