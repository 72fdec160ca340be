"""The devnet's chain: anvil on 127.0.0.1, chain id and port taken from the settings.

Options chosen for seeding (measured on anvil 1.7.1):
- ``--no-mining``: the devnet's miner (``devnet/miner.py``) mines a block whenever transactions
  wait, so a batch shares one block (automine would mine a block per transaction, and a
  block's cost grows with the state);
- no ``--prune-history``: with it, a read at "latest" fails now and then with
  BlockOutOfRangeError when a block is mined meanwhile;
- ``--gas-limit``: blocks ten times mainnet's, so large batches fit in few blocks;
- ``--order fifo``: same-fee transactions of different senders are mined in arrival order;
- ``--no-request-size-limit``: large JSON-RPC batches are accepted (default cap 2 MB);
- ``--balance``: dev account 0 (the deployer) can fund the importer generously;
- ``--quiet``: the banner with the dev keys and one line per transaction stay out of the log
  (errors are still written).
"""
import json
import shutil
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from cic_seed.chainspec import ChainSpec
from cic_seed.config import PROJECT_ROOT

from .process import DevnetError, Service

NAME = "anvil"
PORT_KEY = "ETH_PROVIDER"
LOCAL_HOSTS = ("localhost", "127.0.0.1")
DEV_ACCOUNTS = 10
DEV_BALANCE_ETH = 1_000_000
BLOCK_GAS_LIMIT = 300_000_000


def find_anvil(project_root: Path = PROJECT_ROOT) -> str:
    """Path of the anvil binary: npm's platform package, its wrapper, then PATH."""
    for candidate in sorted(project_root.glob("node_modules/@foundry-rs/anvil-*/bin/anvil")):
        if candidate.is_file():
            return str(candidate)
    wrapper = project_root / "node_modules" / ".bin" / "anvil"
    if wrapper.exists():
        return str(wrapper)
    found = shutil.which("anvil")
    if found:
        return found
    raise DevnetError("anvil not found: run make setup")


def provider_port(url: str) -> int:
    """Port of a local ``http://localhost:PORT`` provider URL; anything else is a DevnetError."""
    parsed = urlparse(url or "")
    if parsed.scheme != "http" or parsed.hostname not in LOCAL_HOSTS:
        raise DevnetError(f"ETH_PROVIDER {url!r} is not a local http URL: the devnet runs anvil on this machine, "
                          "so set ETH_PROVIDER=http://localhost:PORT (or use your network with -r/CIC_REGISTRY_ADDRESS)")
    try:
        port = parsed.port
    except ValueError:
        port = None
    if not port:
        raise DevnetError(f"ETH_PROVIDER {url!r} has no port: set ETH_PROVIDER=http://localhost:PORT")
    return port


def chain_id(settings) -> int:
    """Chain id of the devnet: the network id of CIC_CHAIN_SPEC (8996 for evm:bloxberg:8996)."""
    return ChainSpec.parse(settings.get("CIC_CHAIN_SPEC", "")).network_id


def build_command(anvil_path: str, port: int, chain_id: int, host: str = "127.0.0.1",
                  accounts: int = DEV_ACCOUNTS, balance_eth: int = DEV_BALANCE_ETH,
                  gas_limit: int = BLOCK_GAS_LIMIT) -> list:
    """The anvil command line of the devnet (pure)."""
    return [anvil_path,
            "--host", host, "--port", str(port), "--chain-id", str(chain_id),
            "--accounts", str(accounts), "--balance", str(balance_eth),
            "--gas-limit", str(gas_limit), "--order", "fifo", "--no-request-size-limit",
            "--no-mining", "--quiet"]


def rpc_call(url: str, method: str, params: list, timeout: float = 5.0):
    """One plain JSON-RPC call; the result, or None when the node is unreachable or answers an error."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.load(response)
    except (OSError, ValueError):
        return None
    return answer.get("result") if isinstance(answer, dict) else None


def rpc_ready(url: str, expected_chain_id: int):
    """A readiness check: the node answers eth_chainId with the expected id."""
    return lambda: rpc_call(url, "eth_chainId", [], timeout=1.0) == hex(expected_chain_id)


def rpc_url(settings) -> str:
    """The URL the devnet's anvil answers on (ETH_PROVIDER with the host pinned to 127.0.0.1)."""
    return f"http://127.0.0.1:{provider_port(settings.get('ETH_PROVIDER'))}"


def service(settings, state_dir: Path) -> Service:
    """The anvil Service for these settings (no I/O until started)."""
    port = provider_port(settings.get("ETH_PROVIDER"))
    cid = chain_id(settings)
    try:
        path = find_anvil()
    except DevnetError:
        path = NAME  # start() then fails with "anvil not found: run make setup"; down/status still work
    command = build_command(path, port, cid)
    return Service(NAME, command, state_dir, port, ready=rpc_ready(rpc_url(settings), cid), port_key=PORT_KEY)
