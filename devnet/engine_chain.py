"""The engine's side of the chain: role-account nonces shared through redis, and the helpers
the tracker and the tasks use to build, sign and send the custodial transactions.

Nonces of a role account (the registry writer, the gas gifter) come from one redis counter per
address (INCRBY, initialised from the node's pending count), so any number of threads and
processes can sign for the same account without collisions. A nonce that was handed out but
never reached the node leaves a gap that would stall every later transaction: ``fill_gaps``
finds such holes (the node's pending count lags the counter while later nonces sit queued)
and plugs each with a zero-value transfer to self.
"""
import logging
from dataclasses import dataclass

from cic_seed.chainspec import ChainSpec
from cic_seed.errors import ChainError, ConfigError
from cic_seed.rpc import RpcClient, RpcError
from cic_seed.transactions import TX_GAS, broadcast, gas_price

log = logging.getLogger(__name__)

GAS_GIFTER = "GAS_GIFTER"
ACCOUNT_REGISTRY_WRITER = "ACCOUNT_REGISTRY_WRITER"
ROLES = (GAS_GIFTER, ACCOUNT_REGISTRY_WRITER)

# selectors (contracts.md section 1)
ADD = bytes.fromhex("0a3b0a4f")
HAVE = bytes.fromhex("3ef25013")
GIVE_TO = bytes.fromhex("63e4bff4")
CHECK = bytes.fromhex("c23697a8")
ADD_WRITER = bytes.fromhex("da2824a8")
IS_WRITER = bytes.fromhex("2b29ba23")
TRANSFER_GAS = 21_000
GAS_GIFT_TXS = 3  # a gas gift pays for this many TX_GAS transactions at the engine's gas price

_RESERVE = """
local current = redis.call('GET', KEYS[1])
if not current then
  if ARGV[2] == '' then return -1 end
  redis.call('SET', KEYS[1], ARGV[2])
end
return redis.call('INCRBY', KEYS[1], ARGV[1]) - tonumber(ARGV[1])
"""
_RAISE_TO = """
local current = tonumber(redis.call('GET', KEYS[1]) or '-1')
if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) return tonumber(ARGV[1]) end
return current
"""


def address_arg(address: str) -> bytes:
    """An address as one ABI word."""
    return bytes(12) + bytes.fromhex(address[2:] if address.lower().startswith("0x") else address)


def hex0x(address_hex: str) -> str:
    return address_hex if address_hex.startswith("0x") else "0x" + address_hex


def network_id_of(chain_spec) -> int:
    """The network id of any chain spec form a cic-eth client sends: the 2022 dict (arch/fork/...),
    the 2021 dict (engine/common_name/.../tag), or the spec string."""
    if isinstance(chain_spec, dict):
        value = chain_spec.get("network_id")
        if value is None:
            raise ValueError(f"chain spec {chain_spec!r} has no network_id")
        return int(value)
    if isinstance(chain_spec, str):
        return ChainSpec.parse(chain_spec).network_id
    raise ValueError(f"unsupported chain spec {chain_spec!r}")


class NonceAllocator:
    """Nonces per sending address from a redis counter; safe across threads and processes."""

    def __init__(self, redis_client, rpc: RpcClient, chain_id: int):
        self.redis = redis_client
        self.rpc = rpc
        self.chain_id = chain_id
        self._reserve = redis_client.register_script(_RESERVE)
        self._raise_to = redis_client.register_script(_RAISE_TO)

    def key(self, address: str) -> str:
        return f"cic-eth:engine:{self.chain_id}:nonce:{address.lower()}"

    def reserve(self, address: str, count: int = 1) -> int:
        """The first of ``count`` consecutive nonces now owned by the caller."""
        first = self._reserve(keys=[self.key(address)], args=[count, ""])
        if first == -1:
            first = self._reserve(keys=[self.key(address)], args=[count, self.rpc.nonce(address, "pending")])
        return int(first)

    def next_unreserved(self, address: str):
        value = self.redis.get(self.key(address))
        return int(value) if value is not None else None

    def resync(self, address: str) -> int:
        """After "nonce too low": move the counter up to the node's pending count."""
        return int(self._raise_to(keys=[self.key(address)], args=[self.rpc.nonce(address, "pending")]))

    def fill_gaps(self, signer, price: int) -> list:
        """Plug nonces handed out but never sent (they stall every later one); returns the nonces filled."""
        counter = self.next_unreserved(signer.address)
        pending = self.rpc.nonce(signer.address, "pending")
        if counter is None or pending >= counter:
            return []
        try:
            pool = self.rpc.call("txpool_content", [])
            waiting = set()
            for section in ("pending", "queued"):
                for sender, txs in (pool.get(section) or {}).items():
                    if sender.lower() == signer.address.lower():
                        waiting.update(int(n) for n in txs)
            missing = [n for n in range(pending, counter) if n not in waiting]
        except ChainError:  # a node without txpool_content: fill the first hole, the next stall fills the next
            missing = [pending]
        fillers = [signer.sign(nonce=n, gas_price=price, gas=TRANSFER_GAS, to=signer.address, value=0,
                               chain_id=self.chain_id) for n in missing]
        answers = broadcast(self.rpc, fillers)
        log.warning("filled nonce gap(s) %s of %s", missing, signer.address)
        return [tx.nonce for tx, error in zip(fillers, answers) if error is None]


@dataclass
class EngineChain:
    """Everything the engine needs on chain: the node, the contracts and the role keys."""

    rpc: RpcClient
    chain_id: int
    accounts_index: str
    faucet: str
    writer: object  # cic_seed.signer.Signer of the ACCOUNT_REGISTRY_WRITER role
    gifter: object  # ... of the GAS_GIFTER role
    gas_price: int

    @property
    def gas_needed(self) -> int:
        """Native coin an account needs to send its giveTo."""
        return self.gas_price * TX_GAS

    @property
    def gas_gift(self) -> int:
        return self.gas_price * TX_GAS * GAS_GIFT_TXS

    def add_tx(self, account_hex: str, nonce: int):
        return self.writer.sign(nonce=nonce, gas_price=self.gas_price, gas=TX_GAS, to=self.accounts_index,
                                data=ADD + address_arg(account_hex), chain_id=self.chain_id)

    def gas_tx(self, account_hex: str, nonce: int, extra: int = 0):
        return self.gifter.sign(nonce=nonce, gas_price=self.gas_price, gas=TRANSFER_GAS, to=hex0x(account_hex),
                                value=self.gas_gift + extra, chain_id=self.chain_id)

    def give_to_tx(self, signer, nonce: int):
        return signer.sign(nonce=nonce, gas_price=self.gas_price, gas=TX_GAS, to=self.faucet,
                           data=GIVE_TO + address_arg(signer.address), chain_id=self.chain_id)

    def probe(self, accounts: list) -> list:
        """Per account: (in the accounts index, native balance, faucet still usable, pending nonce)."""
        calls = []
        for account in accounts:
            a = hex0x(account)
            calls += [("eth_call", [{"to": self.accounts_index, "data": "0x" + (HAVE + address_arg(a)).hex()},
                                    "latest"]),
                      ("eth_getBalance", [a, "latest"]),
                      ("eth_call", [{"to": self.faucet, "data": "0x" + (CHECK + address_arg(a)).hex()}, "latest"]),
                      ("eth_getTransactionCount", [a, "pending"])]
        answers = self.rpc.batch(calls)
        states = []
        for i in range(0, len(answers), 4):
            have, balance, usable, nonce = answers[i:i + 4]
            if any(isinstance(x, RpcError) for x in (have, balance, usable, nonce)):
                raise ChainError(f"probing account state failed: {[x for x in answers[i:i + 4]]}")
            states.append((int(have, 16) == 1, int(balance, 16), int(usable, 16) == 1, int(nonce, 16)))
        return states


def connect_engine_chain(settings, keystore) -> EngineChain:
    """Resolve the CIC contracts from the registry and load the role keys from the keystore."""
    from cic_seed.registry import connect
    from cic_seed.signer import Signer

    rpc = RpcClient(settings.require("ETH_PROVIDER", "set ETH_PROVIDER to the devnet's node"))
    chain_spec = ChainSpec.parse(settings.get("CIC_CHAIN_SPEC"))
    registry = settings.require("CIC_REGISTRY_ADDRESS", "start the devnet (python -m devnet up) to deploy one")
    network = connect(rpc, chain_spec, registry, None)
    signers = {}
    for tag in ROLES:
        address = keystore.role(tag)
        key = keystore.private_key(address) if address else None
        if key is None:
            raise ConfigError(f"the engine has no {tag} role account in {keystore!r}: "
                              "run python -m devnet up --backend cic_eth (it sets up the roles)")
        signers[tag] = Signer(key)
    configured = settings.int("CHAIN_GAS_PRICE")
    return EngineChain(rpc, network.chain_id, network.accounts_index, network.faucet,
                       signers[ACCOUNT_REGISTRY_WRITER], signers[GAS_GIFTER], gas_price(rpc, configured))
