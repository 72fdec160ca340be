"""The cic-eth client side: the celery messages the real ``cic_eth.api.Api`` and ``AdminApi`` send.

No cic-eth code is imported (it drags in chainlib, SQLAlchemy and more): like the real Api,
this builds celery signatures by task name, so any cic-eth worker (the real one or the
devnet's engine) runs them. The chain spec travels as the 2022 client's dict.
"""
import logging

import celery
import celery.app.amqp
import kombu.exceptions
from celery.exceptions import TimeoutError as CeleryTimeout

from .chainspec import ChainSpec
from .errors import ServiceUnavailable

log = logging.getLogger(__name__)

LOCK_CREATE = 4  # LockEnum.CREATE on the wire (cic-eth 2022; it was 2 in 2021)
CALLBACK_TASK = "cic_eth.callbacks.redis.redis"
BROKER_HINT = "start the devnet (make devnet-up BACKEND=cic_eth) or point CELERY_BROKER_URL/--broker-url at it"


class PlainReprAMQP(celery.app.amqp.AMQP):
    """Task messages whose ``argsrepr``/``kwargsrepr`` headers come from the builtin repr.

    Celery's saferepr costs about a third of the CPU of sending a message (here and in a worker
    sending linked tasks); the two headers are only shown by monitoring tools."""

    def as_task_v2(self, task_id, name, args=None, kwargs=None, *more, **options):
        if options.get("argsrepr") is None:
            options["argsrepr"] = repr(list(args or ()))[:self.argsrepr_maxsize]
        if options.get("kwargsrepr") is None:
            options["kwargsrepr"] = repr(dict(kwargs or {}))[:self.kwargsrepr_maxsize]
        return super().as_task_v2(task_id, name, args, kwargs, *more, **options)


def make_app(broker_url: str, result_url: str) -> celery.Celery:
    """A bare celery app (no tasks) that talks json and protocol 2, as cic-eth's does.

    The broker is also set as the read and write URL: celery lets an environment variable
    CELERY_BROKER_URL override ``broker_url``, which would silently ignore --broker-url."""
    app = celery.Celery("cic-seed-client", broker=broker_url, backend=result_url, set_as_current=False,
                        amqp=PlainReprAMQP)
    app.conf.update(broker_read_url=broker_url, broker_write_url=broker_url, task_serializer="json", result_serializer="json", accept_content=["json"], task_protocol=2,
                    broker_connection_retry_on_startup=False, broker_connection_max_retries=1,
                    result_backend_transport_options={"retry_policy": {"max_retries": 2, "interval_start": 0.2,
                                                                       "interval_step": 0.3, "interval_max": 1}},
                    task_publish_retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5})
    return app


def chain_spec_dict(chain_spec) -> dict:
    """The dict every cic-eth task gets: from a ChainSpec, a spec string, or a dict as given."""
    if isinstance(chain_spec, dict):
        return chain_spec
    if isinstance(chain_spec, str):
        chain_spec = ChainSpec.parse(chain_spec)
    return chain_spec.asdict()


class CicEthApi:
    """What a seeding client asks cic-eth: create accounts (answers by redis callback), have_account."""

    def __init__(self, app: celery.Celery, queue: str = "cic-eth", callback_task: str = CALLBACK_TASK,
                 callback_queue=None):
        self.app = app
        self.queue = queue
        self.callback_task = callback_task
        self.callback_queue = callback_queue or queue

    def _signature(self, name, args, queue=None):
        return self.app.signature(name, args=list(args), queue=queue or self.queue)

    def _send(self, signature, want_result=True):
        """Publish; without ``want_result`` the client does not subscribe to the task's result (a redis
        round trip per message saved; the message then carries celery's ``ignore_result`` header)."""
        options = {} if want_result else {"ignore_result": True}
        try:
            return signature.apply_async(queue=self.queue, **options)
        except kombu.exceptions.OperationalError as e:
            raise _broker_unreachable(self.app, e) from None

    def check(self):
        """Raise ServiceUnavailable unless the broker answers."""
        try:
            with self.app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, interval_start=0, timeout=3)
        except (kombu.exceptions.OperationalError, OSError) as e:
            raise _broker_unreachable(self.app, e) from None

    def create_account_signature(self, chain_spec, callback_param, register=True, password="", root_id=None,
                                 create_id=None):
        """Api.create_account's chain, unsent: check_lock -> create, whose links are the success callback
        and (with ``register``) reserve_nonce('ACCOUNT_REGISTRY_WRITER') -> register."""
        spec = chain_spec_dict(chain_spec)
        s_check = self._signature("cic_eth.admin.ctrl.check_lock", [password, spec, LOCK_CREATE])
        s_account = self._signature("cic_eth.eth.account.create", [spec])
        if root_id:
            s_check.set(task_id=root_id)
        if create_id:
            s_account.set(task_id=create_id)
        s_check.link(s_account)
        if callback_param is not None:
            s_account.link(self._signature(self.callback_task, [callback_param, 0], queue=self.callback_queue))
        if register:
            s_nonce = self._signature("cic_eth.eth.nonce.reserve_nonce", [spec, "ACCOUNT_REGISTRY_WRITER"])
            s_nonce.link(self._signature("cic_eth.eth.account.register", [spec]))
            s_account.link(s_nonce)
        return s_check

    def create_account(self, chain_spec, callback_param, register=True, password="", root_id=None,
                       create_id=None) -> str:
        """Send Api.create_account's chain (see ``create_account_signature``). Returns the root id, which
        the redis callback repeats as ``root_id``. ``root_id``/``create_id`` fix the task ids in advance,
        so a resumed run can journal them first and read the create result later."""
        return self._send(self.create_account_signature(chain_spec, callback_param, register, password,
                                                        root_id, create_id), want_result=False).id

    def created_address(self, create_id: str):
        """The address a ``create`` task returned, from the result backend; None if it has not run."""
        result = self.app.AsyncResult(create_id)
        try:
            return result.result if result.state == "SUCCESS" else None
        except (kombu.exceptions.OperationalError, OSError) as e:
            raise _results_unreadable(self.app, e) from None

    def have_accounts(self, addresses, chain_spec, timeout: float = 30) -> list:
        """AdminApi.have_account for many addresses, all sent before the first answer is awaited:
        per address the address as the engine gives it back if it holds the key, else None."""
        spec = chain_spec_dict(chain_spec)
        pending = [self._send(self._signature("cic_eth.eth.account.have", [a, spec])) for a in addresses]
        answers = []
        try:
            for result in pending:
                answers.append(result.get(timeout=timeout))
        except CeleryTimeout:
            raise ServiceUnavailable(f"no answer from cic-eth on queue {self.queue!r} within {timeout:g} s: "
                                     "is its worker running (make devnet-up BACKEND=cic_eth)?") from None
        except (kombu.exceptions.OperationalError, OSError) as e:
            raise _results_unreadable(self.app, e) from None
        return answers

    def have_account(self, address, chain_spec, timeout: float = 30):
        """AdminApi.have_account: the address if cic-eth holds its key, else None."""
        return self.have_accounts([address], chain_spec, timeout)[0]


def api_from_settings(settings) -> CicEthApi:
    """CELERY_BROKER_URL, CELERY_RESULT_URL and CELERY_QUEUE (callbacks on the same queue)."""
    app = make_app(settings.require("CELERY_BROKER_URL", "set it or pass --broker-url"),
                   settings.require("CELERY_RESULT_URL", "set it or pass --result-url"))
    return CicEthApi(app, queue=settings.get("CELERY_QUEUE", "cic-eth"))


def _broker_unreachable(app, error) -> ServiceUnavailable:
    return ServiceUnavailable(f"cannot reach the celery broker at {app.conf.broker_write_url} ({error}): {BROKER_HINT}")


def _results_unreadable(app, error) -> ServiceUnavailable:
    return ServiceUnavailable(f"cannot read results from {app.conf.result_backend} ({error}): "
                              "check CELERY_RESULT_URL/--result-url")
