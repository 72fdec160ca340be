"""Pure parts of the engine's services: command lines, ports, environments, chain specs."""
import pytest

from cic_seed.config import load_settings
from cic_seed.errors import ConfigError
from devnet import engine, redis_server
from devnet.engine_chain import ADD, GIVE_TO, address_arg, network_id_of
from devnet.engine_tasks import TASKS, build_worker_argv


@pytest.fixture
def clean_env(monkeypatch):
    for key in ("CELERY_BROKER_URL", "CELERY_RESULT_URL", "REDIS_PORT", "CELERY_QUEUE", "DEVNET_ENGINE_DB",
                "CHAIN_GAS_PRICE", "ETH_PROVIDER"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_redis_command_is_local_without_persistence(tmp_path):
    command = redis_server.build_command(6390, tmp_path)
    assert command[0] == "/usr/bin/redis-server"
    text = " ".join(command)
    assert "--bind 127.0.0.1" in text and "--port 6390" in text and "--appendonly no" in text
    assert command[command.index("--save") + 1] == ""
    assert command[command.index("--dir") + 1] == str(tmp_path / "redis")


def test_redis_port_defaults_to_the_cluster_port(clean_env):
    assert redis_server.redis_port(load_settings(use_devnet=False)) == 63379


def test_redis_port_follows_the_broker_url(clean_env):
    clean_env.setenv("CELERY_BROKER_URL", "redis://localhost:6400/0")
    clean_env.setenv("REDIS_PORT", "6400")
    assert redis_server.redis_port(load_settings(use_devnet=False)) == 6400


def test_disagreeing_broker_and_redis_port_is_a_clear_error(clean_env):
    clean_env.setenv("CELERY_BROKER_URL", "redis://localhost:6400")
    clean_env.setenv("REDIS_PORT", "6401")
    with pytest.raises(ConfigError, match="CELERY_BROKER_URL uses port 6400 but REDIS_PORT is 6401"):
        redis_server.redis_port(load_settings(use_devnet=False))


def test_a_non_redis_broker_is_refused(clean_env):
    clean_env.setenv("CELERY_BROKER_URL", "amqp://localhost:5672")
    with pytest.raises(ConfigError, match="not a redis:// URL"):
        redis_server.redis_port(load_settings(use_devnet=False))


def test_redis_service_is_named_and_does_no_io(clean_env, tmp_path):
    service = redis_server.service(load_settings(use_devnet=False), tmp_path / "state")
    assert service.name == "redis" and service.port == 63379 and service.host == "127.0.0.1"
    assert not (tmp_path / "state").exists()


def test_engine_command_and_environment(clean_env, tmp_path):
    clean_env.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:7000")
    clean_env.setenv("DEVNET_ENGINE_DB", "postgresql://postgres@127.0.0.1/test")
    settings = load_settings(use_devnet=False)
    assert engine.build_command("/py", 4) == ["/py", "-m", "devnet.engine_tasks", "--concurrency", "4"]
    env = engine.worker_env(settings, tmp_path)
    assert env["DEVNET_STATE_DIR"] == str(tmp_path.resolve())
    assert env["CELERY_BROKER_URL"] == "redis://127.0.0.1:7000"
    assert env["DEVNET_ENGINE_DB"] == "postgresql://postgres@127.0.0.1/test"
    assert env["CELERY_QUEUE"] == "cic-eth" and "CHAIN_GAS_PRICE" not in env
    service = engine.service(settings, tmp_path)
    assert service.name == "engine" and service.env == env


def test_worker_listens_like_cic_eth_tasker():
    argv = build_worker_argv("cic-eth", 8)
    assert argv[:5] == ["worker", "-Q", "cic-eth", "-n", "cic-eth@%h"]


def test_every_task_the_clients_send_is_registered_by_name():
    names = {name for name, *_ in TASKS}
    assert names == {"cic_eth.admin.ctrl.check_lock", "cic_eth.eth.account.create", "cic_eth.eth.nonce.reserve_nonce",
                     "cic_eth.eth.account.register", "cic_eth.eth.account.gift", "cic_eth.eth.gas.refill_gas",
                     "cic_eth.eth.account.have", "cic_eth.callbacks.redis.redis", "cic_eth.callbacks.noop.noop"}


@pytest.mark.parametrize("spec", [
    {"arch": "evm", "fork": "bloxberg", "network_id": 8996, "common_name": None, "custom": []},
    {"arch": "evm", "fork": "byzantium", "network_id": 8996, "common_name": "bloxberg", "custom": []},
    {"engine": "evm", "common_name": "bloxberg", "network_id": 8996, "tag": None},
    {"engine": "evm", "common_name": "byzantium", "network_id": 8996, "tag": "bloxberg"},
    {"engine": "evm", "common_name": "bloxberg", "network_id": "8996", "tag": None},
    "evm:bloxberg:8996", "evm:byzantium:8996:bloxberg",
])
def test_every_chain_spec_form_gives_the_network_id(spec):
    assert network_id_of(spec) == 8996


def test_a_chain_spec_without_network_id_is_refused():
    with pytest.raises(ValueError):
        network_id_of({"arch": "evm"})


def test_calldata_words():
    account = "0x" + "ab" * 20
    assert (ADD + address_arg(account)).hex() == "0a3b0a4f" + "00" * 12 + "ab" * 20
    assert (GIVE_TO + address_arg("ab" * 20)).hex() == "63e4bff4" + "00" * 12 + "ab" * 20
