"""JSON-RPC over HTTP with batching: one POST carries many requests."""
import itertools
import logging

import requests

from .errors import ChainError, ServiceUnavailable

log = logging.getLogger(__name__)

BATCH_LIMIT = 500


class RpcError(Exception):
    """An error object returned for one request of a batch."""

    def __init__(self, code, message, data=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class RpcClient:
    """Talks to one EVM JSON-RPC endpoint; ``batch`` sends many requests per round trip."""

    def __init__(self, url: str, timeout: float = 60):
        self.url = url
        self.timeout = timeout
        self._session = None
        self._ids = itertools.count(1)

    @property
    def session(self):
        if self._session is None:
            self._session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=16)
            self._session.mount("http://", adapter)
            self._session.mount("https://", adapter)
        return self._session

    def _post(self, payload):
        try:
            response = self.session.post(self.url, json=payload, timeout=self.timeout)
        except requests.ConnectionError:
            raise ServiceUnavailable(f"cannot reach the EVM node at {self.url}: start it (make devnet-up) "
                                     "or point -p/ETH_PROVIDER at a running node") from None
        except requests.Timeout:
            raise ServiceUnavailable(f"the EVM node at {self.url} did not answer within {self.timeout} s") from None
        if response.status_code != 200:
            raise ChainError(f"the EVM node at {self.url} answered HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise ChainError(f"the EVM node at {self.url} did not answer JSON-RPC") from None

    def call(self, method: str, params: list):
        """One request; an error answer raises ChainError."""
        result = self.batch([(method, params)])[0]
        if isinstance(result, RpcError):
            raise ChainError(f"{method} failed: {result.message}")
        return result

    def batch(self, requests_: list) -> list:
        """Send ``[(method, params), ...]``; returns results in order, an RpcError where one failed."""
        results = []
        for start in range(0, len(requests_), BATCH_LIMIT):
            chunk = requests_[start:start + BATCH_LIMIT]
            ids = [next(self._ids) for _ in chunk]
            payload = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in zip(ids, chunk)]
            answer = self._post(payload)
            if isinstance(answer, dict):  # a node that rejects the batch as a whole
                error = answer.get("error", {})
                raise ChainError(f"the EVM node rejected a batch: {error.get('message', answer)}")
            by_id = {item.get("id"): item for item in answer}
            for i in ids:
                item = by_id.get(i, {"error": {"code": -1, "message": "no answer in batch"}})
                if "error" in item:
                    err = item["error"]
                    results.append(RpcError(err.get("code"), err.get("message", ""), err.get("data")))
                else:
                    results.append(item.get("result"))
        return results

    def chain_id(self) -> int:
        return int(self.call("eth_chainId", []), 16)

    def block_number(self) -> int:
        return int(self.call("eth_blockNumber", []), 16)

    def gas_price(self) -> int:
        return int(self.call("eth_gasPrice", []), 16)

    def nonce(self, address: str, block="pending") -> int:
        return int(self.call("eth_getTransactionCount", [address, block]), 16)

    def balances(self, addresses: list) -> list:
        answers = self.batch([("eth_getBalance", [a, "latest"]) for a in addresses])
        return [_int_or_raise(a, "eth_getBalance") for a in answers]

    def eth_calls(self, calls: list, block="latest") -> list:
        """``[(to, data_hex), ...]`` -> raw return bytes, or RpcError for a revert."""
        answers = self.batch([("eth_call", [{"to": to, "data": data}, block]) for to, data in calls])
        return [a if isinstance(a, RpcError) else bytes.fromhex(a[2:]) for a in answers]


def _int_or_raise(answer, method):
    if isinstance(answer, RpcError):
        raise ChainError(f"{method} failed: {answer.message}")
    return int(answer, 16)
