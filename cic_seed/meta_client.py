"""cic-meta HTTP client: plain reads, server-merge writes, many requests in flight.

A write is the server-merge pair cic-types uses: ``POST /<ptr>`` with the value answers an
Envelope and its ``digest``; ``PUT /<ptr>`` ``{"m": <that envelope text>, "s": <signature>}``
stores it; a plain ``GET /<ptr>`` then returns exactly the value.

Each worker thread keeps one persistent ``http.client`` connection. (Measured on the 2-core
dev machine: requests costs ~1 ms of client CPU per request, urllib3 ~0.4 ms, http.client
~0.2 ms, and bulk uploads are CPU-bound.) Connection errors and 5xx answers are retried with
exponential backoff (every step is idempotent: the POST stores nothing and the PUT replaces).
A 4xx is a ``MetaRequestError`` naming the pointer; a server that stays unreachable is
``ServiceUnavailable`` naming the URL. Proxies are not used.
"""
import json
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from .errors import SeedError, ServiceUnavailable
from .http_pool import PooledClient

SERVER_MERGE = {"X-CIC-AUTOMERGE": "server", "Content-Type": "application/json"}
PROBE_POINTER = "0" * 64
RETRY_STATUS = (500, 502, 503, 504)
_END = object()


class MetaRequestError(SeedError):
    """cic-meta refused a request (4xx, or 5xx after the retries)."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


def unsigned(digest: str) -> dict:
    """The signature object of an unsigned write (accepted by servers that don't enforce signing)."""
    return {"engine": "pgp", "algo": "sha256", "data": "", "digest": digest}


class MetaClient(PooledClient):
    """Talks to one cic-meta server. Use as a context manager (or ``open()``/``close()``).

    ``workers`` bounds the calls in flight in ``run_many`` (one connection each);
    ``retries`` and ``backoff`` (seconds, doubled per attempt) govern connection errors and
    5xx answers; ``signer`` is a callable ``digest -> signature object`` (see
    ``cic_seed.pgp``), None for unsigned writes.
    """

    def __init__(self, url: str, workers: int = 4, timeout: float = 30.0, retries: int = 5,
                 backoff: float = 0.1, signer=None):
        self.url = (url or "").rstrip("/")
        self.workers = workers
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.signer = signer

    def open(self):
        """Check the URL and get ready (connections are made on first use)."""
        self._path = self._connect("META_URL", "--meta-provider").path.rstrip("/")
        return self

    def _retry_status(self, status):
        return status in RETRY_STATUS

    def _unreachable(self, error):
        return ServiceUnavailable(f"cic-meta at {self.url} is not reachable ({type(error).__name__}): start it "
                                  "(make devnet-up) or point META_URL / --meta-provider at a running server")

    def _request(self, method, pointer, what, body=None, headers=None):
        status, reason, data = self._send(method, f"{self._path}/{pointer}", body, headers)
        if status >= 400 and not (method == "GET" and status == 404):
            text = data.decode("utf-8", "replace").strip()[:200]
            raise MetaRequestError(f"cic-meta answered {method} {what} at pointer {pointer} with "
                                   f"HTTP {status} {text or reason}", status)
        return status, data

    def check(self):
        """Raise ServiceUnavailable unless the server answers (any pointer read will do)."""
        self._request("GET", PROBE_POINTER, "probe")

    def get(self, pointer: str, default=None, what="document"):
        """The plain JSON document at ``pointer``, or ``default`` if there is none."""
        status, data = self._request("GET", pointer, what)
        if status == 404:
            return default
        try:
            return json.loads(data)
        except ValueError:
            raise MetaRequestError(f"cic-meta sent invalid JSON for {what} at pointer {pointer}: "
                                   f"{data[:80]!r}") from None

    def put(self, pointer: str, value, what="document"):
        """Write ``value`` at ``pointer`` (server merge: POST, sign the digest, PUT)."""
        body = json.dumps(value).encode("ascii")
        _, data = self._request("POST", pointer, what, body, SERVER_MERGE)
        try:
            envelope_text = data.decode("utf-8")
            digest = json.loads(envelope_text)["digest"]
        except (ValueError, KeyError, TypeError):
            raise MetaRequestError(f"cic-meta answered POST {what} at pointer {pointer} without an "
                                   "envelope digest: is META_URL a cic-meta server?") from None
        signature = self.signer(digest) if self.signer is not None else unsigned(digest)
        put_body = json.dumps({"m": envelope_text, "s": signature}).encode("ascii")
        self._request("PUT", pointer, what, put_body, SERVER_MERGE)

    def run_many(self, fn, items):
        """Call ``fn(item)`` for every item with ``workers`` calls in flight; yields
        ``(item, result, error)`` as calls finish (error is the MetaRequestError or None).
        ServiceUnavailable and unexpected exceptions stop the run and propagate.
        Items are consumed lazily, so a generator of 100,000 entries stays cheap."""
        items = iter(items)
        pending = {}
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="meta") as pool:
            try:
                while True:
                    while len(pending) < 2 * self.workers:
                        item = next(items, _END)
                        if item is _END:
                            break
                        pending[pool.submit(fn, item)] = item
                    if not pending:
                        return
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        item = pending.pop(future)
                        error = future.exception()
                        if error is not None and not isinstance(error, MetaRequestError):
                            raise error
                        yield item, (None if error else future.result()), error
            finally:
                for future in pending:
                    future.cancel()
