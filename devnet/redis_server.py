"""The devnet's redis: celery broker and result backend of the engine, and the callback channel.

It listens on 127.0.0.1 only, keeps nothing on disk (no RDB snapshots, no AOF) and runs in
its own directory ``<state_dir>/redis``. When a redis already answers on the configured port
and it is not ours (a developer's own, or a cluster's), it is used as it is.
"""
import logging
import shutil
from pathlib import Path
from urllib.parse import urlparse

from cic_seed.errors import ConfigError

from .process import DevnetError, Service, wait_for

log = logging.getLogger(__name__)

REDIS_SERVER = "/usr/bin/redis-server"
DEFAULT_PORT = 63379
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "")


def build_command(port: int, state_dir: Path, redis_server: str = REDIS_SERVER) -> list:
    """redis-server on 127.0.0.1:port, in the foreground, without persistence, in state_dir/redis."""
    return [redis_server, "--bind", "127.0.0.1", "--port", str(int(port)), "--save", "", "--appendonly", "no",
            "--dir", str(Path(state_dir) / "redis"), "--daemonize", "no", "--loglevel", "warning",
            "--maxclients", "10000"]


def redis_port(settings) -> int:
    """The port of the devnet redis: CELERY_BROKER_URL's (if it is local), which REDIS_PORT must match."""
    broker = urlparse(settings.get("CELERY_BROKER_URL") or f"redis://localhost:{DEFAULT_PORT}")
    if broker.scheme not in ("redis", ""):
        raise ConfigError(f"CELERY_BROKER_URL {settings.get('CELERY_BROKER_URL')} is not a redis:// URL: "
                          "the devnet engine uses redis as broker")
    redis_port_setting = settings.int("REDIS_PORT")
    if (broker.hostname or "") not in LOCAL_HOSTS:
        return redis_port_setting or DEFAULT_PORT
    port = broker.port or 6379
    if redis_port_setting is not None and redis_port_setting != port:
        raise ConfigError(f"CELERY_BROKER_URL uses port {port} but REDIS_PORT is {redis_port_setting}: the devnet "
                          "runs one redis for both, make them agree")
    return port


def answers_ping(port: int, host: str = "127.0.0.1") -> bool:
    """True when a redis server answers PING on host:port."""
    import redis

    client = redis.Redis(host=host, port=port, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


class RedisService(Service):
    """A Service that reuses a redis it did not start, when one already answers on its port."""

    def start(self, timeout: float = 30.0) -> bool:
        """Start redis (False when ours already runs or a foreign redis is reused)."""
        if not self.running() and self.port_open():
            if not answers_ping(self.port, self.host):
                raise DevnetError(f"port {self.port} is taken by something that is not redis: "
                                  f"stop it or set {self.port_key}")
            log.info("using the redis already running on %s:%s", self.host, self.port)
            return False
        if shutil.which(self.command[0]) is None:
            raise DevnetError(f"{self.command[0]} not found: install redis-server (apt-get install redis-server)")
        (self.state_dir / "redis").mkdir(parents=True, exist_ok=True)
        return super().start(timeout)

    def reused(self) -> bool:
        """True when redis answers on the port but was not started by us."""
        return not self.running() and answers_ping(self.port, self.host)


def service(settings, state_dir: Path) -> RedisService:
    """The devnet redis service for these settings (nothing is started here)."""
    port = redis_port(settings)
    return RedisService("redis", build_command(port, state_dir), state_dir, port,
                        ready=lambda: answers_ping(port), port_key="REDIS_PORT and CELERY_BROKER_URL")


def wait_ready(port: int, timeout: float = 10) -> bool:
    """Wait until redis answers on 127.0.0.1:port."""
    return wait_for(lambda: answers_ping(port), timeout)
