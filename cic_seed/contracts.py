"""Calldata for the CIC contracts, encoded from the ABIs shipped in their PyPI sdists."""
from functools import lru_cache

import eth_abi
from eth_utils import function_abi_to_4byte_selector

from . import artifacts
from .rpc import RpcError

ACCOUNTS_INDEX = "AccountsIndex"
REGISTRY = "Registry"
TOKEN_INDEX = "TokenUniqueSymbolIndex"
TOKEN = "GiftableToken"
FAUCET = "ERC20Faucet"


def _types(params):
    out = []
    for p in params:
        if p["type"].startswith("tuple"):
            out.append("(" + ",".join(_types(p["components"])) + ")" + p["type"][5:])
        else:
            out.append(p["type"])
    return out


class Function:
    """One ABI function: encodes its calldata and decodes its return value."""

    def __init__(self, abi: dict):
        self.name = abi["name"]
        self.inputs = _types(abi["inputs"])
        self.outputs = _types(abi.get("outputs", []))
        self.selector = function_abi_to_4byte_selector(abi)

    def data(self, *args) -> bytes:
        return self.selector + eth_abi.encode(self.inputs, list(args))

    def hexdata(self, *args) -> str:
        return "0x" + self.data(*args).hex()

    def decode(self, raw):
        """Decode a return value; a revert (RpcError) stays an RpcError."""
        if isinstance(raw, RpcError):
            return raw
        values = eth_abi.decode(self.outputs, raw)
        return values[0] if len(values) == 1 else values


@lru_cache(maxsize=None)
def function(contract: str, name: str) -> Function:
    """The first ABI entry called ``name`` (none of the functions used here are overloaded)."""
    for entry in artifacts.load_abi(contract):
        if entry.get("type") == "function" and entry["name"] == name:
            return Function(entry)
    raise KeyError(f"{contract} has no function {name}")


def bytes32_id(text: str) -> bytes:
    """Registry identifiers and token symbols: UTF-8, left-aligned, zero-padded to 32 bytes."""
    raw = text.encode()
    if len(raw) > 32:
        raise ValueError(f"{text!r} is longer than 32 bytes")
    return raw.ljust(32, b"\0")
