"""Following the chain for account registrations: successful top-level ``add(address)``
transactions sent to the AccountsIndex.

The index logs ``AddressAdded(address)`` (not indexed) for every add, so ``eth_getLogs``
finds the candidates in one request per block range; each is then checked to be a
top-level transaction to the index whose calldata is ``add`` of the logged address,
as cic-eth's tracker and the 2021 balance importer required.
"""
from dataclasses import dataclass

from eth_utils import keccak, to_checksum_address

from .contracts import ACCOUNTS_INDEX, function
from .rpc import RpcClient, RpcError
from .errors import ChainError

ADDRESS_ADDED = "0x" + keccak(text="AddressAdded(address)").hex()
BLOCK_RANGE = 10_000


@dataclass(frozen=True)
class Registration:
    block: int
    tx_hash: str
    account: str  # checksum address


def registrations(rpc: RpcClient, accounts_index: str, from_block: int, to_block: int) -> list:
    """Registrations mined in blocks ``from_block..to_block`` (inclusive), in chain order."""
    logs = []
    for start in range(from_block, to_block + 1, BLOCK_RANGE):
        end = min(start + BLOCK_RANGE - 1, to_block)
        logs += rpc.call("eth_getLogs", [{"address": accounts_index, "topics": [ADDRESS_ADDED],
                                          "fromBlock": hex(start), "toBlock": hex(end)}])
    if not logs:
        return []
    txs = rpc.batch([("eth_getTransactionByHash", [log["transactionHash"]]) for log in logs])
    add_selector = function(ACCOUNTS_INDEX, "add").selector
    found = []
    for log, tx in zip(logs, txs):
        if isinstance(tx, RpcError) or tx is None:
            raise ChainError(f"cannot read transaction {log['transactionHash']}")
        account = to_checksum_address("0x" + log["data"][-40:])
        calldata = bytes.fromhex(tx["input"][2:])
        top_level = (tx.get("to") or "").lower() == accounts_index.lower() and calldata[:4] == add_selector
        if top_level and calldata[16:36].hex() == account[2:].lower():
            found.append(Registration(int(log["blockNumber"], 16), log["transactionHash"], account))
    return found
