"""The devnet as a whole: which services each backend needs, in order; up, down and status.

A step is either a service (a factory ``(settings, state_dir) -> Service``) or an action run
once the services before it are up (the contract deployment). Adding a service to a backend is
one entry in ``BACKEND_STEPS``; ``down`` stops every known service in reverse order.
web3 and eth-account load only when the chain is touched, so ``status`` and ``down`` stay quick.
"""
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from . import anvil, engine, meta_server, miner, redis_server, ussd_server
from .process import DevnetError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """One step of ``up``: a service to start, or an action (``run(devnet) -> str``)."""

    name: str
    service: object = None  # callable (settings, state_dir) -> Service
    run: object = None  # callable (Devnet) -> what it did


@dataclass(frozen=True)
class StepResult:
    name: str
    action: str  # started | running | deployed | kept | config written
    detail: str = ""

    def line(self) -> str:
        return f"{self.name:<10} {self.action}{'  ' + self.detail if self.detail else ''}"


def _contracts(devnet) -> StepResult:
    return devnet.ensure_contracts()


ANVIL = Step("anvil", service=anvil.service)
CONTRACTS = Step("contracts", run=_contracts)
MINER = Step("miner", service=miner.service)
CHAIN = (ANVIL, MINER, CONTRACTS)


def _engine_roles(devnet) -> StepResult:
    setup = engine.setup_roles(devnet.settings, devnet.state_dir, devnet.deployment())
    return StepResult("roles", ", ".join(setup.done) if setup.done else "kept",
                      " ".join(f"{tag}={address}" for tag, address in setup.roles.items()))


REDIS = Step("redis", service=redis_server.service)
ROLES = Step("roles", run=_engine_roles)
ENGINE = Step("engine", service=engine.service)
CUSTODIAL = (REDIS, ROLES, ENGINE)  # the cic-eth engine: broker, role accounts, worker
META = Step("meta", service=meta_server.service)
USSD = Step("ussd", service=ussd_server.service)
BACKEND_STEPS = {
    "eth": CHAIN + (META,),
    "cic_eth": CHAIN + CUSTODIAL + (META,),
    "cic_ussd": CHAIN + CUSTODIAL + (META, USSD),
}
BACKENDS = tuple(BACKEND_STEPS)
# services whose state refers to one chain: a new chain starts them afresh
CHAIN_BOUND = ("redis", "engine", "meta", "ussd")


def all_services() -> list:
    """Every service step of every backend, each once, in start order."""
    seen = {}
    for steps in BACKEND_STEPS.values():
        for step in steps:
            if step.service is not None:
                seen.setdefault(step.name, step)
    return list(seen.values())


class Devnet:
    """The local devnet kept in ``state_dir`` (pidfiles, logs, keys, deployment, config)."""

    def __init__(self, settings, state_dir: Path):
        self.settings = settings
        self.state_dir = Path(state_dir)
        self._w3 = None

    @property
    def deployment_file(self) -> Path:
        return self.state_dir / "deployment.json"

    @property
    def config_dir(self) -> Path:
        return self.state_dir / "config"

    def web3(self):
        """A web3 connection to the devnet's anvil."""
        if self._w3 is None:
            from web3 import Web3

            self._w3 = Web3(Web3.HTTPProvider(anvil.rpc_url(self.settings), request_kwargs={"timeout": 30}))
        return self._w3

    def deployment(self):
        """The saved Deployment, or None."""
        from . import deploy

        return deploy.Deployment.load(self.deployment_file)

    def services(self) -> list:
        """The Service of every known step (for status and down)."""
        return [step.service(self.settings, self.state_dir) for step in all_services()]

    def up(self, backend: str = "eth", timeout: float = 30.0) -> list:
        """Start what ``backend`` needs, in order; deploy the contracts only on a chain without them.

        Returns one StepResult per step. When everything already runs, nothing changes.
        """
        if backend not in BACKEND_STEPS:
            raise DevnetError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        results = []
        for step in BACKEND_STEPS[backend]:
            if step.service is not None:
                service = step.service(self.settings, self.state_dir)
                started = service.start(timeout=timeout)
                detail = f"{service.host}:{service.port} pid {service.pid()}"
                results.append(StepResult(step.name, "started" if started else "running", detail))
            else:
                results.append(step.run(self))
        return results

    def ensure_contracts(self) -> StepResult:
        """Deploy unless this chain already has our deployment; (re)write the scripts' config."""
        from . import deploy

        deployment = self.deployment()
        url = anvil.rpc_url(self.settings)
        if deploy.is_deployed(url, deployment):
            action = "kept"
        else:
            from cic_seed.rpc import RpcClient

            started = time.monotonic()
            deployment = deploy.deploy(RpcClient(url, timeout=30), self.state_dir,
                                       self.settings.int("DEVNET_FAUCET_AMOUNT", 0),
                                       self.settings.int("DEVNET_IMPORTER_TOKENS", 0))
            log.info("deployed in %.2f s", time.monotonic() - started)
            self._forget_old_chain()
            action = "deployed"
        written = deploy.write_config(self.state_dir, deployment, self.settings.get("ETH_PROVIDER"))
        if written and action == "kept":
            action = "config written"
        return StepResult("contracts", action, f"registry {deployment.registry}")

    def _forget_old_chain(self):
        """A fresh deployment means a fresh chain: stop the services whose state belongs to the old
        one (the engine's redis queues and nonces, the meta documents, the USSD registrations) and
        drop their stores, so that no pointer or registration names an account the chain lacks.
        The later steps of ``up`` start them again. The engine's key store is kept."""
        for step in all_services():
            if step.name in CHAIN_BOUND and step.service(self.settings, self.state_dir).stop():
                log.info("stopped %s: its state belonged to the previous chain", step.name)
        for store in (meta_server.db_path(self.settings, self.state_dir), ussd_server.db_path(self.state_dir)):
            for path in (store, store.with_name(store.name + "-wal"), store.with_name(store.name + "-shm")):
                path.unlink(missing_ok=True)

    def down(self) -> list:
        """Stop every service whose pidfile is ours, last started first; remove the config.

        Returns the names of the services that were stopped.
        """
        stopped = [service.name for service in reversed(self.services()) if service.stop()]
        shutil.rmtree(self.config_dir, ignore_errors=True)
        return stopped

    def status(self) -> list:
        """A ServiceStatus per known service."""
        return [service.status() for service in self.services()]

    def registry_address(self):
        """Registry of the running devnet's deployment (from deployment.json), or None."""
        if not (self.config_dir / "devnet.ini").is_file():
            return None
        try:
            return json.loads(self.deployment_file.read_text())["registry"]
        except (FileNotFoundError, ValueError, KeyError):
            return None
