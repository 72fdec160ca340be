"""The CIC contract registry: which contracts a seeding run talks to."""
from dataclasses import dataclass

from eth_utils import is_address, to_checksum_address

from .chainspec import ChainSpec
from .contracts import FAUCET, REGISTRY, TOKEN, TOKEN_INDEX, bytes32_id, function
from .errors import ChainError, ConfigError
from .rpc import RpcClient, RpcError

ZERO = "0x" + "00" * 20
REQUIRED_ENTRIES = ("AccountRegistry", "TokenRegistry", "Faucet", "DefaultToken")


@dataclass(frozen=True)
class Token:
    address: str
    symbol: str
    decimals: int


@dataclass(frozen=True)
class Network:
    """A connected CIC network: the RPC client plus the addresses every step needs."""

    rpc: RpcClient
    chain_spec: ChainSpec
    registry: str
    accounts_index: str
    token_index: str
    faucet: str
    token: Token

    @property
    def chain_id(self) -> int:
        return self.chain_spec.network_id


def _address(value, what) -> str:
    if not value or not is_address(value):
        raise ConfigError(f"{what} {value!r} is not an address: pass a 0x-prefixed 40 hex digit address")
    return to_checksum_address(value)


def _decoded_address(raw, what):
    address = function(REGISTRY, "addressOf").decode(raw)
    if isinstance(address, RpcError):
        raise ChainError(f"looking up {what} failed: {address.message}")
    return to_checksum_address(address)


def connect(rpc: RpcClient, chain_spec: ChainSpec, registry_address: str, token_symbol: str | None) -> Network:
    """Check the node (reachable, right chain id) and resolve the registry entries and the token."""
    if not registry_address:
        raise ConfigError("no CIC registry address: pass -r/--registry, set CIC_REGISTRY_ADDRESS, "
                          "or start the local devnet with make devnet-up")
    registry = _address(registry_address, "registry address")
    chain_id = rpc.chain_id()
    if chain_id != chain_spec.network_id:
        raise ConfigError(f"the node at {rpc.url} runs chain id {chain_id}, but the chain spec {chain_spec} says "
                          f"{chain_spec.network_id}: fix -i/CIC_CHAIN_SPEC or -p/ETH_PROVIDER")
    if rpc.call("eth_getCode", [registry, "latest"]) in ("0x", "0x0", None):
        raise ConfigError(f"no contract at registry address {registry} on {rpc.url}: check -r/CIC_REGISTRY_ADDRESS")
    lookup = function(REGISTRY, "addressOf")
    answers = rpc.eth_calls([(registry, lookup.hexdata(bytes32_id(name))) for name in REQUIRED_ENTRIES])
    entries = {name: _decoded_address(raw, name) for name, raw in zip(REQUIRED_ENTRIES, answers)}
    missing = [name for name, address in entries.items() if address == ZERO]
    if missing:
        raise ConfigError(f"the registry {registry} has no entry for {', '.join(missing)}: "
                          "deploy and register those contracts, or use another registry")
    token = resolve_token(rpc, entries["TokenRegistry"], entries["DefaultToken"], token_symbol)
    return Network(rpc, chain_spec, registry, entries["AccountRegistry"], entries["TokenRegistry"],
                   entries["Faucet"], token)


def resolve_token(rpc: RpcClient, token_index: str, default_token: str, symbol: str | None) -> Token:
    """The token by symbol in the TokenRegistry (left-aligned bytes32 key), else DefaultToken."""
    address = default_token
    if symbol:
        raw = rpc.eth_calls([(token_index, function(TOKEN_INDEX, "addressOf").hexdata(bytes32_id(symbol)))])[0]
        address = _decoded_address(raw, f"token {symbol}")
        if address == ZERO:
            raise ConfigError(f"token symbol {symbol!r} is not in the TokenRegistry {token_index} "
                              "(symbols are case-sensitive): check --token-symbol/TOKEN_SYMBOL")
    symbol_raw, decimals_raw = rpc.eth_calls([(address, function(TOKEN, "symbol").hexdata()),
                                              (address, function(TOKEN, "decimals").hexdata())])
    found_symbol = function(TOKEN, "symbol").decode(symbol_raw)
    decimals = function(TOKEN, "decimals").decode(decimals_raw)
    if isinstance(found_symbol, RpcError) or isinstance(decimals, RpcError):
        raise ChainError(f"the token at {address} does not answer symbol()/decimals()")
    return Token(address, found_symbol, decimals)


def connect_from_settings(settings) -> Network:
    chain_spec = ChainSpec.parse(settings.get("CIC_CHAIN_SPEC"))
    rpc = RpcClient(settings.require("ETH_PROVIDER", "pass -p/--provider or set ETH_PROVIDER"))
    return connect(rpc, chain_spec, settings.get("CIC_REGISTRY_ADDRESS"), settings.get("TOKEN_SYMBOL"))


def faucet_amount(network: Network) -> int:
    raw = network.rpc.eth_calls([(network.faucet, function(FAUCET, "tokenAmount").hexdata())])[0]
    amount = function(FAUCET, "tokenAmount").decode(raw)
    if isinstance(amount, RpcError):
        raise ChainError(f"the faucet {network.faucet} has no tokenAmount(): is it an erc20-faucet 0.8 ERC20Faucet?")
    return amount
