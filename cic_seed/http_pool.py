"""One kept-alive ``http.client`` connection per worker thread (the meta and USSD clients).

``http.client`` costs a fifth of the CPU per request that ``requests`` does, and the uploads
are CPU-bound; a connection is not thread-safe, so each thread keeps its own.
"""
import http.client
import logging
import threading
import time
from urllib.parse import urlsplit

from .errors import ServiceUnavailable, UsageError

logger = logging.getLogger(__name__)


class ThreadConnections:
    """Connections to one host, one per thread; ``drop`` after an error, ``close`` at the end."""

    def __init__(self, scheme: str, host: str, port, timeout: float):
        self.factory = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        self.host = host
        self.port = port
        self.timeout = timeout
        self._by_thread = {}
        self._lock = threading.Lock()

    def get(self):
        """This thread's connection, opened on first use."""
        connection = self._by_thread.get(threading.get_ident())
        if connection is None:
            connection = self.factory(self.host, self.port, timeout=self.timeout)
            with self._lock:
                self._by_thread[threading.get_ident()] = connection
        return connection

    def drop(self):
        """Forget this thread's connection (after an error: the next request opens a new one)."""
        with self._lock:
            connection = self._by_thread.pop(threading.get_ident(), None)
        if connection is not None:
            connection.close()

    def close(self):
        """Close every thread's connection."""
        with self._lock:
            connections, self._by_thread = list(self._by_thread.values()), {}
        for connection in connections:
            connection.close()


class PooledClient:
    """What the HTTP clients share: ``_connect`` checks the URL and makes the pool, ``_send`` makes one
    request with retries; close, context manager. A subclass sets ``url``, ``timeout``, ``retries``,
    ``backoff`` and says which statuses it retries, where the backoff stops growing and what an
    unreachable server is called."""

    _pool = None
    _path = ""
    MAX_BACKOFF = 5.0  # seconds

    def open(self):
        raise NotImplementedError

    def _retry_status(self, status: int) -> bool:
        return status >= 500

    def _unreachable(self, error) -> ServiceUnavailable:
        raise NotImplementedError

    def _connect(self, setting: str, flag: str):
        """Check ``self.url`` (an http(s) URL, else UsageError naming ``setting`` and ``flag``), make the
        connection pool (connections open on first use); returns the URL's parts."""
        parts = urlsplit(self.url)
        try:
            port, bad_port = parts.port, ""
        except ValueError:
            port, bad_port = None, " (bad port)"
        if parts.scheme not in ("http", "https") or not parts.hostname or bad_port:
            raise UsageError(f"{setting} {self.url!r} is not an http(s) URL{bad_port}: set {setting} or {flag}")
        self._pool = ThreadConnections(parts.scheme, parts.hostname, port, self.timeout)
        return parts

    def _send(self, method, path, body, headers):
        """One request with retries (connection errors, and the statuses ``_retry_status`` names, with
        exponential backoff); returns (status, reason, body bytes)."""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(self.backoff * 2 ** (attempt - 1), self.MAX_BACKOFF))
            try:
                connection = self._pool.get()
                connection.request(method, path, body=body, headers=headers or {})
                response = connection.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as e:
                self._pool.drop()
                logger.debug("%s %s: %s (attempt %d)", method, path, e, attempt + 1)
                if attempt == self.retries:
                    raise self._unreachable(e) from None
                continue
            if response.will_close:
                self._pool.drop()
            if not self._retry_status(response.status) or attempt == self.retries:
                return response.status, response.reason, data
            logger.debug("%s %s: HTTP %d, retrying", method, path, response.status)
        raise AssertionError("unreachable")

    def close(self):
        """Close every worker thread's connection."""
        if self._pool is not None:
            self._pool.close()

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()
