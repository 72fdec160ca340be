"""One kept-alive ``http.client`` connection per worker thread (the meta and USSD clients).

``http.client`` costs a fifth of the CPU per request that ``requests`` does, and the uploads
are CPU-bound; a connection is not thread-safe, so each thread keeps its own.
"""
import http.client
import threading


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
    """Lifecycle shared by the HTTP clients: ``open()`` sets ``self._pool``; close, context manager."""

    _pool = None

    def open(self):
        raise NotImplementedError

    def close(self):
        """Close every worker thread's connection."""
        if self._pool is not None:
            self._pool.close()

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

