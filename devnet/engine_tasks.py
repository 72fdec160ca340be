"""A cic-eth-compatible celery worker for the devnet: the task names, argument orders and
results a real cic-eth tasker has (reference cic-eth.md sections 1, 2, 4, 7), backed by
engine_keys (the keystore) and engine_tracker (which sends and follows the transactions).

Run it with ``python -m devnet.engine_tasks [--concurrency N]``; settings come from the config
files and the environment (CELERY_BROKER_URL, CELERY_RESULT_URL, CELERY_QUEUE, ETH_PROVIDER,
CIC_REGISTRY_ADDRESS, CIC_CHAIN_SPEC, DEVNET_ENGINE_DB, DEVNET_STATE_DIR). All tasks ack late
and are idempotent, so a worker stopped mid-run loses nothing and creates nothing twice.
"""
import argparse
import json
import logging
import sys
import threading

import redis
from celery import Celery, bootsteps
from celery._state import _set_task_join_will_block

from cic_seed.celery_client import PlainReprAMQP
from cic_seed.chainspec import ChainSpec
from cic_seed.config import devnet_state_dir, load_settings
from cic_seed.errors import SeedError
from cic_seed.signer import Signer
from cic_seed.transactions import broadcast, wait_receipts

from .engine_chain import ROLES, NonceAllocator, connect_engine_chain, network_id_of
from .engine_keys import keystore_from_settings, normalize_address
from .engine_tracker import Tracker, queue_registration

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 4  # threads: the tasks never block long; more threads only fight for the GIL


class RoleMissingError(Exception):
    """A role tag (e.g. ACCOUNT_REGISTRY_WRITER) has no account."""


class Engine:
    """What the tasks share in one worker process; everything is opened on first use."""

    def __init__(self, settings, state_dir):
        self.settings = settings
        self.chain_id = ChainSpec.parse(settings.get("CIC_CHAIN_SPEC")).network_id
        self.keystore = keystore_from_settings(settings, state_dir)
        self._redis = None
        self._chain = None
        self._nonces = None
        self._callback_clients = {}
        self._lock = threading.Lock()

    @property
    def redis(self):
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.settings.get("CELERY_BROKER_URL"))
        return self._redis

    @property
    def chain(self):
        return self._connect()[0]

    @property
    def nonces(self):
        return self._connect()[1]

    def _connect(self):
        with self._lock:
            if self._chain is None:
                chain = connect_engine_chain(self.settings, self.keystore)
                self._nonces = NonceAllocator(self.redis, chain.rpc, chain.chain_id)
                self._chain = chain
            return self._chain, self._nonces

    def check_chain(self, chain_spec):
        """Refuse work for another chain than the one this engine serves."""
        if network_id_of(chain_spec) != self.chain_id:
            raise ValueError(f"chain spec {chain_spec!r} is not this engine's chain (network id {self.chain_id})")

    def callback_client(self, host, port, db):
        """A redis client per callback destination, kept for the worker's life."""
        key = (host, int(port), int(db))
        with self._lock:
            if key not in self._callback_clients:
                self._callback_clients[key] = redis.Redis(host=host, port=int(port), db=int(db))
            return self._callback_clients[key]

    def run_tracker(self, stop: threading.Event):
        """The tracker loop, restarted after errors until ``stop`` is set."""
        while not stop.is_set():
            try:
                Tracker(self.chain, self.nonces, self.redis, self.keystore, stop).run()
            except (SeedError, OSError, redis.RedisError) as e:
                log.error("engine tracker stopped: %s; retrying in 2 s", e)
                stop.wait(2)
            except Exception:  # noqa: BLE001 - a bug must not end onboarding for the worker's life
                log.exception("engine tracker crashed; restarting it in 2 s (it resumes from redis)")
                stop.wait(2)


class TrackerStep(bootsteps.StartStopStep):
    """Runs the tracker in a thread of the worker process while the worker runs."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.stop_event = threading.Event()
        self.thread = None

    def start(self, worker):
        self.thread = threading.Thread(target=worker.app.engine.run_tracker, args=(self.stop_event,),
                                       name="engine-tracker", daemon=True)
        self.thread.start()

    def stop(self, worker):
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(10)


def check_lock(self, chained_input, chain_spec_dict, lock_flags, address=None):
    """Pass ``chained_input`` on; the devnet never locks (LockEnum CREATE is 4 in 2022, 2 in 2021)."""
    self.app.engine.check_chain(chain_spec_dict)
    return chained_input


def create(self, password, chain_spec_dict):
    """A new custodial key; the same one again for a redelivered message of the same API call."""
    self.app.engine.check_chain(chain_spec_dict)
    return self.app.engine.keystore.create(root_id=self.request.root_id or self.request.id)


def reserve_nonce(self, chained_input, chain_spec_dict, signer_address=None):
    """Pass ``chained_input`` on; role nonces are handed out when the tracker signs."""
    engine = self.app.engine
    engine.check_chain(chain_spec_dict)
    if signer_address in ROLES and engine.keystore.role(signer_address) is None:
        raise RoleMissingError(signer_address)
    return chained_input


def register(self, account_address, chain_spec_dict, writer_address=None):
    """Queue AccountsIndex.add(account) (then gas and giveTo) for the tracker; returns the account."""
    engine = self.app.engine
    engine.check_chain(chain_spec_dict)
    queue_registration(engine.redis, engine.chain_id, normalize_address(account_address))
    return account_address


def gift(self, account_address, chain_spec_dict):
    """Gas if needed, then Faucet.giveTo(account) signed by the account; returns [signed tx hex]."""
    engine = self.app.engine
    engine.check_chain(chain_spec_dict)
    chain = engine.chain
    key = engine.keystore.private_key(account_address)
    if key is None:
        raise ValueError(f"no key held for {account_address}")
    have, balance, _usable, nonce = chain.probe([account_address])[0]
    if not have:
        raise ValueError(f"{account_address} is not in the accounts index yet")
    if balance < chain.gas_needed:
        _refill(engine, account_address, 0, True)
    tx = chain.give_to_tx(Signer(key), nonce)
    _send(engine, [tx])
    return ["0x" + tx.raw.hex()]


def refill_gas(self, recipient, chain_spec_dict, immediate_gas=0):
    """Native coin from the GAS_GIFTER role; returns the signed tx hex."""
    self.app.engine.check_chain(chain_spec_dict)
    return "0x" + _refill(self.app.engine, recipient, int(immediate_gas or 0), False).raw.hex()


def have(self, account, chain_spec_dict):
    """``account`` unchanged if the engine holds its key, else None."""
    self.app.engine.check_chain(chain_spec_dict)
    try:
        return account if self.app.engine.keystore.have(account) else None
    except ValueError:
        return None


def redis_callback(self, result, destination, status_code):
    """PUBLISH {"root_id", "status", "result"} to the channel in ``host:port:db:channel``."""
    host, port, db, channel = destination.split(":")
    payload = json.dumps({"root_id": self.request.root_id, "status": status_code, "result": result})
    self.app.engine.callback_client(host, port, db).publish(channel, payload)


def noop(result, param, status_code):
    """The default callback: does nothing, returns ``result``."""
    return result


def _refill(engine, recipient, extra, wait):
    chain = engine.chain
    tx = chain.gas_tx(normalize_address(recipient), engine.nonces.reserve(chain.gifter.address), extra)
    _send(engine, [tx])
    if wait:
        wait_receipts(chain.rpc, [tx.hash], timeout=30)
    return tx


def _send(engine, txs):
    """Send or raise; a refused role nonce leaves a gap, which the tracker fills when it stalls."""
    for tx, error in zip(txs, broadcast(engine.chain.rpc, txs)):
        if error is not None:
            raise RuntimeError(f"the node refused tx {tx.hash}: {error.message}")


# name, function, bind, keep the result. Results are kept where a client reads them
# (AdminApi.have_account; create, which a resumed import asks for) or they carry data (signed
# txs); the other steps of create_account answer by callback, and storing their results would
# cost a redis round trip per task.
TASKS = (
    ("cic_eth.admin.ctrl.check_lock", check_lock, True, False),
    ("cic_eth.eth.account.create", create, True, True),
    ("cic_eth.eth.nonce.reserve_nonce", reserve_nonce, True, False),
    ("cic_eth.eth.account.register", register, True, False),
    ("cic_eth.eth.account.gift", gift, True, True),
    ("cic_eth.eth.gas.refill_gas", refill_gas, True, True),
    ("cic_eth.eth.account.have", have, True, True),
    ("cic_eth.callbacks.redis.redis", redis_callback, True, False),
    ("cic_eth.callbacks.noop.noop", noop, False, False),
)


def make_app(settings, state_dir, tracker=True) -> Celery:
    """The engine's celery app: redis broker and result backend, json, protocol 2, tasks by cic-eth name."""
    broker = settings.get("CELERY_BROKER_URL")
    app = Celery("cic-eth-devnet", broker=broker, backend=settings.get("CELERY_RESULT_URL"), set_as_current=False,
                 amqp=PlainReprAMQP)
    # read/write URLs too: celery would let an environment CELERY_BROKER_URL win over ``broker``
    app.conf.update(broker_read_url=broker, broker_write_url=broker, task_serializer="json",
                    result_serializer="json", accept_content=["json"], task_protocol=2,
                    task_default_queue=settings.get("CELERY_QUEUE", "cic-eth"), task_acks_late=True,
                    task_reject_on_worker_lost=True, result_expires=3600, worker_prefetch_multiplier=8,
                    broker_connection_retry_on_startup=True, broker_transport_options={"visibility_timeout": 120},
                    worker_hijack_root_logger=False)
    app.engine = Engine(settings, state_dir)
    for name, function, bind, keep_result in TASKS:
        app.task(name=name, bind=bind, ignore_result=not keep_result)(function)
    if tracker:
        app.steps["worker"].add(TrackerStep)
    return app


def build_worker_argv(queue: str, concurrency: int, pool: str = "threads") -> list:
    """Arguments of ``app.worker_main``, as cic-eth's tasker is started: -Q <queue> -n <queue>."""
    return ["worker", "-Q", queue, "-n", f"{queue}@%h", "--pool", pool, "--concurrency", str(concurrency),
            "--loglevel", "WARNING", "--without-gossip", "--without-mingle"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="cic-eth-compatible engine worker of the devnet")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--pool", choices=["threads", "prefork", "solo"], default="threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    app = make_app(settings, devnet_state_dir())
    # Tasks never wait for other tasks' results, so (as the prefork pool does) tell celery that
    # joining would block: then the links a task sends are not subscribed to in the result backend.
    _set_task_join_will_block(True)
    app.worker_main(build_worker_argv(settings.get("CELERY_QUEUE", "cic-eth"), args.concurrency, args.pool))
    return 0


if __name__ == "__main__":
    sys.exit(main())
