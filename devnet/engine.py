"""The devnet's custodial engine: its worker service and its role accounts.

``setup_roles`` does what cic-stack's ``4_init_custodial.sh`` does: it creates the
GAS_GIFTER and ACCOUNT_REGISTRY_WRITER accounts in the engine's keystore (table
``account_role``), funds both from the deployer, and makes the writer a writer of the
AccountsIndex. ``service`` is the celery worker (``python -m devnet.engine_tasks``), ready
when it answers a celery ping.
"""
import logging
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from cic_seed.chainspec import ChainSpec
from cic_seed.errors import ChainError

from .process import Service, service_env

log = logging.getLogger(__name__)

NAME = "engine"
WEI = 10 ** 18
GAS_GIFTER_FUNDS = 100_000 * WEI
WRITER_FUNDS = 10_000 * WEI
# keys the worker must see exactly as the orchestrator does (they may come from -c DIR or flags)
WORKER_KEYS = ("CELERY_BROKER_URL", "CELERY_RESULT_URL", "CELERY_QUEUE", "ETH_PROVIDER", "CIC_CHAIN_SPEC",
               "DEVNET_ENGINE_DB", "CHAIN_GAS_PRICE")
CONCURRENCY = 4


def build_command(python: str = sys.executable, concurrency: int = CONCURRENCY) -> list:
    """The engine worker's command line (pure)."""
    return [python, "-m", "devnet.engine_tasks", "--concurrency", str(concurrency)]


def worker_env(settings, state_dir: Path) -> dict:
    """Environment of the worker: the state dir and the settings it must share with the orchestrator."""
    return service_env(settings, state_dir, WORKER_KEYS)


def worker_answers(broker_url: str, queue: str, timeout: float = 0.5) -> bool:
    """True when the engine worker (node ``<queue>@<host>``) answers a celery ping."""
    from celery import Celery

    app = Celery("devnet-engine-ping", broker=broker_url, set_as_current=False)
    app.conf.update(broker_connection_retry_on_startup=False, broker_read_url=broker_url,
                    broker_write_url=broker_url)
    node = f"{queue}@{socket.gethostname()}"
    try:
        replies = app.control.ping(destination=[node], timeout=timeout)
    except Exception as e:  # noqa: BLE001 - kombu raises many kinds while redis is not up yet
        log.debug("engine ping failed: %s", e)
        return False
    finally:
        app.close()
    return any(node in reply for reply in replies or [])


def service(settings, state_dir: Path) -> Service:
    """The engine worker service for these settings (nothing is started here).

    The worker listens on no port of its own; its readiness is a celery ping over the broker.
    """
    broker = settings.get("CELERY_BROKER_URL")
    queue = settings.get("CELERY_QUEUE", "cic-eth")
    return Service(NAME, build_command(), state_dir, 0, env=worker_env(settings, state_dir),
                   ready=lambda: worker_answers(broker, queue), port_key="CELERY_BROKER_URL")


@dataclass(frozen=True)
class RoleSetup:
    roles: dict  # tag -> 0x address
    done: tuple  # what this call changed ("created GAS_GIFTER", ...); empty when all was in place


def setup_roles(settings, state_dir: Path, deployment=None) -> RoleSetup:
    """Create, fund and authorise the role accounts (idempotent).

    ``deployment`` is the devnet's Deployment (read from state_dir/deployment.json if None):
    its deployer funds the roles and owns the AccountsIndex.
    """
    from cic_seed.rpc import RpcClient
    from cic_seed.signer import Signer
    from cic_seed.transactions import TX_GAS, broadcast, gas_price, succeeded, wait_receipts

    from .deploy import Deployment, deployer_key
    from .engine_chain import (ACCOUNT_REGISTRY_WRITER, ADD_WRITER, GAS_GIFTER, IS_WRITER, ROLES, TRANSFER_GAS,
                               address_arg)
    from .engine_keys import keystore_from_settings

    deployment = deployment or Deployment.load(Path(state_dir) / "deployment.json")
    if deployment is None:
        raise ChainError(f"no deployment in {state_dir}: deploy the contracts first (python -m devnet up)")
    done = []
    with keystore_from_settings(settings, state_dir) as keystore:
        roles = {}
        for tag in ROLES:
            address = keystore.role(tag)
            if address is None or not keystore.have(address):
                address = keystore.create()
                keystore.set_role(tag, address)
                done.append(f"created {tag}")
            roles[tag] = Signer(keystore.private_key(address)).address
    rpc = RpcClient(settings.get("ETH_PROVIDER"))
    chain_id = ChainSpec.parse(settings.get("CIC_CHAIN_SPEC")).network_id
    deployer = Signer(deployer_key())
    price = gas_price(rpc, settings.int("CHAIN_GAS_PRICE"))
    writer = roles[ACCOUNT_REGISTRY_WRITER]
    answers = rpc.batch([("eth_getBalance", [roles[tag], "latest"]) for tag in ROLES] + [
        ("eth_call", [{"to": deployment.accounts_index, "data": "0x" + (IS_WRITER + address_arg(writer)).hex()},
                      "latest"])])
    nonce = rpc.nonce(deployer.address, "pending")
    txs = []
    funds = {GAS_GIFTER: GAS_GIFTER_FUNDS, ACCOUNT_REGISTRY_WRITER: WRITER_FUNDS}
    for tag, balance in zip(ROLES, answers):
        if int(balance, 16) < funds[tag] // 2:
            done.append(f"funded {tag}")
            txs.append(deployer.sign(nonce=nonce + len(txs), gas_price=price, gas=TRANSFER_GAS, to=roles[tag],
                                     value=funds[tag], chain_id=chain_id))
    fresh_chain = int(answers[-1], 16) != 1
    if fresh_chain:
        done.append("authorised the writer")
        txs.append(deployer.sign(nonce=nonce + len(txs), gas_price=price, gas=TX_GAS, to=deployment.accounts_index,
                                 data=ADD_WRITER + address_arg(writer), chain_id=chain_id))
    for tx, error in zip(txs, broadcast(rpc, txs)):
        if error is not None:
            raise ChainError(f"setting up the engine roles: the node refused {tx.hash}: {error.message}")
    receipts = wait_receipts(rpc, [tx.hash for tx in txs], timeout=60)
    failed = [h for h, receipt in receipts.items() if not succeeded(receipt)]
    if failed:
        raise ChainError(f"setting up the engine roles: transactions {failed} reverted; see the anvil log")
    if fresh_chain:
        _reset_nonces(settings, chain_id, roles.values())
    return RoleSetup(roles, tuple(done))


def _reset_nonces(settings, chain_id, addresses):
    """Forget role nonce counters of an earlier chain (a reused redis outlives a restarted anvil)."""
    import redis

    from .engine_chain import NonceAllocator

    client = redis.Redis.from_url(settings.get("CELERY_BROKER_URL"), socket_connect_timeout=2)
    try:
        allocator = NonceAllocator(client, None, chain_id)
        client.delete(*[allocator.key(address) for address in addresses])
    except redis.RedisError as e:
        log.warning("could not reset the role nonces in redis: %s", e)
    finally:
        client.close()
