"""Receiving cic-eth's redis callbacks: one channel for many account creations in flight.

cic-eth's ``cic_eth.callbacks.redis.redis`` task PUBLISHes
``{"root_id": <id of the API call's first task>, "status": 0|1, "result": ...}`` on the channel
named in the callback param ``host:port:db:channel``. The listener subscribes *before* any
request is sent (so nothing is missed), keeps every reply until it is asked for (replies may
arrive in any order, or before the caller knows the root id), and ignores duplicates.
"""
import json
import logging
import time
import uuid
from dataclasses import dataclass

import redis
from eth_utils import is_hex_address, to_checksum_address

from .errors import ServiceUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reply:
    root_id: str
    status: int
    result: object

    @property
    def ok(self) -> bool:
        return self.status == 0

    @property
    def address(self):
        """The result as a 0x-checksum address (cic-eth 2022 sends bare lower-case hex, 2021 0x-checksum)."""
        value = self.result
        if not isinstance(value, str):
            return None
        value = value if value.lower().startswith("0x") else "0x" + value
        return to_checksum_address(value) if is_hex_address(value) else None


class CallbackListener:
    """Subscribes to one uuid channel on REDIS_HOST:REDIS_PORT/REDIS_DB; use as a context manager."""

    def __init__(self, host: str, port: int, db: int = 0, host_callback=None, port_callback=None, channel=None):
        self.host = host
        self.port = int(port)
        self.db = int(db)
        self.host_callback = host_callback or host
        self.port_callback = int(port_callback or port)
        self.channel = channel or str(uuid.uuid4())
        self.replies = {}
        self._seen = set()
        self._client = None
        self._pubsub = None

    @property
    def param(self) -> str:
        """The callback param for Api(callback_param=...): how the worker reaches this redis and channel."""
        return f"{self.host_callback}:{self.port_callback}:{self.db}:{self.channel}"

    def open(self) -> "CallbackListener":
        """Subscribe and wait for redis to confirm, so every later PUBLISH reaches us."""
        self._client = redis.Redis(host=self.host, port=self.port, db=self.db, socket_connect_timeout=5)
        self._pubsub = self._client.pubsub()
        try:
            self._pubsub.subscribe(self.channel)
            deadline = time.monotonic() + 10
            while True:
                message = self._pubsub.get_message(timeout=1)
                if message and message["type"] == "subscribe":
                    break
                if message and message["type"] == "message":
                    self._take(message)
                if time.monotonic() > deadline:
                    raise ServiceUnavailable(f"redis at {self.host}:{self.port} did not confirm the subscription")
        except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
            self.close()
            raise ServiceUnavailable(f"cannot reach redis at {self.host}:{self.port} for cic-eth callbacks ({e}): "
                                     "start the devnet (make devnet-up BACKEND=cic_eth) or set "
                                     "REDIS_HOST/REDIS_PORT (--redis-host/--redis-port)") from None
        return self

    def close(self):
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except (redis.RedisError, OSError):
                pass
        if self._client is not None:
            self._client.close()
        self._pubsub = self._client = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    def _take(self, message):
        try:
            data = json.loads(message["data"])
            reply = Reply(str(data["root_id"]), int(data["status"]), data.get("result"))
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed callback on %s: %r", self.channel, message["data"][:200])
            return None
        if reply.root_id in self._seen:
            log.debug("duplicate callback for %s ignored", reply.root_id)
            return None
        self._seen.add(reply.root_id)
        self.replies[reply.root_id] = reply
        return reply

    def poll(self, timeout: float = 0.0) -> list:
        """Read what has arrived, waiting up to ``timeout`` for the first message; returns new replies."""
        new = []
        try:
            message = self._pubsub.get_message(timeout=timeout)
            while message is not None:
                if message["type"] == "message":
                    reply = self._take(message)
                    if reply is not None:
                        new.append(reply)
                message = self._pubsub.get_message(timeout=0)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
            raise ServiceUnavailable(f"lost the connection to redis at {self.host}:{self.port} ({e}): "
                                     "is the devnet still running?") from None
        return new

    def wait(self, root_ids, timeout: float) -> dict:
        """root_id -> Reply for each of ``root_ids`` that answers within ``timeout``; missing ones are absent."""
        wanted = set(root_ids)
        deadline = time.monotonic() + timeout
        while not wanted.issubset(self.replies):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.poll(min(left, 0.5))
        return {r: self.replies[r] for r in wanted if r in self.replies}

    def pop(self, root_id):
        """Forget (and return) a reply the caller has dealt with."""
        return self.replies.pop(root_id, None)


def listener_from_settings(settings) -> CallbackListener:
    """REDIS_HOST/REDIS_PORT/REDIS_DB to subscribe; REDIS_HOST_CALLBACK/REDIS_PORT_CALLBACK for the param."""
    return CallbackListener(settings.get("REDIS_HOST", "localhost"), settings.int("REDIS_PORT", 63379),
                            settings.int("REDIS_DB", 0), settings.get("REDIS_HOST_CALLBACK"),
                            settings.int("REDIS_PORT_CALLBACK"))
