"""A real devnet for the integration tests: own state dir, free ports, torn down at the end.

``devnet`` is the chain with the CIC contracts (backend "eth"). A test that needs the
custodial services asks ``devnet_factory("cic_eth")`` (or "cic_ussd"): it brings the same
session devnet up for that backend too (the chain is shared, the extra services start once).

While the session runs, ``os.environ`` points every service key at free ports and
``DEVNET_STATE_DIR`` at a temp folder, so ``load_settings()`` in the tests and in scripts
started with ``handle.env`` see the test devnet; the previous environment is restored after.
"""
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cic_seed.config import load_settings
from devnet.network import Devnet
from devnet.process import process_alive

HERE = Path(__file__).resolve().parent

# set by the devnet itself (config/devnet.ini in the state dir), so no outer value may mask it
CLEARED_KEYS = ("CIC_REGISTRY_ADDRESS", "ETH_KEYFILE", "ETH_PASSPHRASE_FILE", "ETH_PASSPHRASE")


def free_port() -> int:
    """A TCP port nobody listens on right now (bind port 0, then release it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(state_dir: Path) -> dict:
    """Environment of a devnet on free ports, kept in state_dir."""
    chain, redis, meta, ussd = (free_port() for _ in range(4))
    return {
        "DEVNET_STATE_DIR": str(state_dir),
        "ETH_PROVIDER": f"http://127.0.0.1:{chain}",
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(redis),
        "REDIS_HOST_CALLBACK": "127.0.0.1",
        "REDIS_PORT_CALLBACK": str(redis),
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{redis}",
        "CELERY_RESULT_URL": f"redis://127.0.0.1:{redis}",
        "META_URL": f"http://127.0.0.1:{meta}",
        "USSD_PROVIDER": f"http://127.0.0.1:{ussd}",
    }


def pytest_collection_modifyitems(config, items):
    """Everything under tests/integration carries the integration marker."""
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


@dataclass
class DevnetHandle:
    """What a test needs from the running devnet."""

    devnet: Devnet
    state_dir: Path
    env: dict  # the whole environment for subprocess scripts
    backends: set = field(default_factory=set)

    @property
    def settings(self):
        """Settings as a script sees them now (defaults, the devnet's config, the env)."""
        return load_settings()

    @property
    def deployment(self):
        return self.devnet.deployment()

    @property
    def rpc_url(self) -> str:
        return self.env["ETH_PROVIDER"]

    def web3(self):
        return self.devnet.web3()


@pytest.fixture(scope="session")
def devnet_factory(tmp_path_factory):
    """``start(backend="eth") -> DevnetHandle``: the session devnet, up for that backend."""
    state_dir = tmp_path_factory.mktemp("devnet")
    with pytest.MonkeyPatch.context() as patch:
        for key in CLEARED_KEYS:
            patch.delenv(key, raising=False)
        for key, value in service_env(state_dir).items():
            patch.setenv(key, value)
        handle = DevnetHandle(Devnet(load_settings(), state_dir), state_dir, dict(os.environ))

        def start(backend: str = "eth") -> DevnetHandle:
            if backend not in handle.backends:
                handle.devnet.up(backend)
                handle.backends.add(backend)
            return handle

        try:
            yield start
        finally:
            pids = [s.pid for s in handle.devnet.status() if s.pid]
            handle.devnet.down()
            left = [pid for pid in pids if process_alive(pid)]
            assert not left, f"devnet processes survived down: {left}"


@pytest.fixture
def fresh_devnet_env(tmp_path) -> dict:
    """The environment of a second, separate devnet (state in tmp_path/state, other free ports)
    for tests that start and stop their own; nothing runs until they start it."""
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_KEYS}
    env.update(service_env(tmp_path / "state"))
    return env


@pytest.fixture(scope="session")
def devnet(devnet_factory) -> DevnetHandle:
    """The devnet chain with the CIC contracts and the importer wallet."""
    return devnet_factory("eth")
