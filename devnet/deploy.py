"""Deploy and wire the real CIC contracts on the devnet, and create the importer wallet.

The deployer is anvil's dev account 0 (derived from anvil's public default mnemonic). All 20
transactions are signed locally with consecutive nonces (contract addresses follow from the
nonce), sent in one JSON-RPC batch, and confirmed together, so a deployment takes about a
second. The wiring follows the reference (contracts.md):

Registry(7 CIC identifiers) · AccountsIndex + addWriter(deployer) · TokenUniqueSymbolIndex +
addWriter(deployer) + register(token) · GiftableToken('Sarafu', 'SRF', 6, 0) ·
ERC20FaucetStorage + ERC20Faucet(token, store, accountsIndex) + store.transferOwnership(faucet) ·
mintTo(faucet, 1,000,000 SRF) · setAmount(DEVNET_FAUCET_AMOUNT SRF) · the 5 registry entries ·
importer: native coin, mintTo(importer, DEVNET_IMPORTER_TOKENS SRF), AccountsIndex.addWriter(importer).

Signing and sending use the project's Signer and RpcClient. They, eth-account (for the dev key)
and eth-keyfile take about a second to import, so only the functions that deploy import them;
``Deployment``, ``is_deployed`` and ``write_config`` (all that a no-op ``up`` needs) do not.
"""
import json
import logging
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from cic_seed import artifacts, contracts
from cic_seed.contracts import bytes32_id
from cic_seed.files import atomic_write
from cic_seed.errors import ChainError

from .anvil import rpc_call
from .process import DevnetError

log = logging.getLogger(__name__)

DEV_MNEMONIC = "test test test test test test test test test test test junk"  # anvil's public default
DEV_PATH = "m/44'/60'/0'/0/0"
IDENTIFIERS = ("ContractRegistry", "AccountRegistry", "TokenRegistry", "Faucet", "DefaultToken",
               "AddressDeclarator", "TransferAuthorization")
TOKEN_NAME, TOKEN_SYMBOL, TOKEN_DECIMALS = "Sarafu", "SRF", 6
FAUCET_FUNDING_TOKENS = 1_000_000
IMPORTER_ETH = 10_000
KEYFILE_ITERATIONS = 262_144
DEPLOY_GAS = 3_000_000
CALL_GAS = 300_000
RECEIPT_TIMEOUT = 60
ADDRESS_OF = "bb34534c"  # addressOf(bytes32)
WEI = 10 ** 18
DURABLE = False  # the devnet's files live as long as anvil's in-memory chain: no fsync


def create_address(sender: str, nonce: int) -> str:
    """Address of the contract that ``sender`` creates with ``nonce`` (CREATE)."""
    import rlp
    from eth_utils import keccak, to_checksum_address

    return to_checksum_address(keccak(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:])


def deployer_key() -> bytes:
    """Private key of anvil's dev account 0 (public knowledge; never use it off the devnet)."""
    from eth_account.hdaccount import key_from_seed, seed_from_mnemonic

    return key_from_seed(seed_from_mnemonic(DEV_MNEMONIC, ""), DEV_PATH)


@dataclass(frozen=True)
class Deployment:
    """Where everything the devnet deployed lives (checksummed addresses)."""

    chain_id: int
    registry: str
    accounts_index: str
    token_index: str
    token: str
    faucet: str
    faucet_storage: str
    deployer: str
    importer: str
    keyfile: str
    passphrase_file: str
    token_symbol: str = TOKEN_SYMBOL
    token_decimals: int = TOKEN_DECIMALS

    def registry_entries(self) -> dict:
        """Registry identifier -> address as set by the deployment (the other two stay 0x0)."""
        return {"ContractRegistry": self.registry, "AccountRegistry": self.accounts_index,
                "TokenRegistry": self.token_index, "Faucet": self.faucet, "DefaultToken": self.token}

    def save(self, path: Path) -> None:
        """Write as JSON (atomically)."""
        atomic_write(path, json.dumps(asdict(self), indent=2) + "\n", durable=DURABLE)

    @classmethod
    def load(cls, path: Path):
        """The deployment saved at path, or None when there is none (or it is unreadable)."""
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None


class _Batch:
    """Transactions of one sender with consecutive nonces, signed locally."""

    def __init__(self, signer, nonce: int, gas_price: int, chain_id: int):
        self.signer = signer
        self.sender = signer.address
        self.nonce = nonce
        self.gas_price = gas_price
        self.chain_id = chain_id
        self.txs = []  # SignedTx, in nonce order
        self.labels = []  # what each transaction does, for the error messages

    def _sign(self, label, to, data=b"", value=0, gas=CALL_GAS):
        self.txs.append(self.signer.sign(nonce=self.nonce, gas_price=self.gas_price, gas=gas, to=to,
                                         value=value, data=data, chain_id=self.chain_id))
        self.labels.append(label)
        self.nonce += 1

    def create(self, name: str, types=(), args=()) -> str:
        """Deploy artifact ``name`` with constructor args; returns its future address."""
        import eth_abi

        address = create_address(self.sender, self.nonce)
        data = artifacts.load_bytecode(name) + eth_abi.encode(list(types), list(args))
        self._sign(f"deploy {name}", None, data, gas=DEPLOY_GAS)
        return address

    def call(self, label: str, address: str, contract: str, function: str, *args):
        """A state-changing call of ``contract``'s ``function`` (from its ABI) on ``address``."""
        self._sign(label, address, contracts.function(contract, function).data(*args))

    def pay(self, label: str, to: str, wei: int):
        self._sign(label, to, value=wei, gas=21_000)


def _plan(batch: _Batch, importer: str, faucet_units: int, importer_units: int) -> dict:
    """Queue the whole deployment; returns the contract addresses it will create."""
    deployer = batch.sender
    registry = batch.create("Registry", ["bytes32[]"], [[bytes32_id(i) for i in IDENTIFIERS]])
    accounts_index = batch.create("AccountsIndex")
    token_index = batch.create("TokenUniqueSymbolIndex")
    token = batch.create("GiftableToken", ["string", "string", "uint8", "uint256"],
                         [TOKEN_NAME, TOKEN_SYMBOL, TOKEN_DECIMALS, 0])
    storage = batch.create("ERC20FaucetStorage")
    faucet = batch.create("ERC20Faucet", ["address", "address", "address"], [token, storage, accounts_index])
    batch.call("AccountsIndex.addWriter(deployer)", accounts_index, "AccountsIndex", "addWriter", deployer)
    batch.call("TokenIndex.addWriter(deployer)", token_index, "TokenUniqueSymbolIndex", "addWriter", deployer)
    batch.call("TokenIndex.register(token)", token_index, "TokenUniqueSymbolIndex", "register", token)
    batch.call("FaucetStorage.transferOwnership(faucet)", storage, "ERC20FaucetStorage", "transferOwnership", faucet)
    batch.call("mintTo(faucet)", token, "GiftableToken", "mintTo", faucet, FAUCET_FUNDING_TOKENS * 10 ** TOKEN_DECIMALS)
    batch.call("Faucet.setAmount", faucet, "ERC20Faucet", "setAmount", faucet_units)
    entries = {"ContractRegistry": registry, "AccountRegistry": accounts_index, "TokenRegistry": token_index,
               "Faucet": faucet, "DefaultToken": token}
    for identifier, address in entries.items():
        batch.call(f"Registry.set({identifier})", registry, "Registry", "set", bytes32_id(identifier), address)
    batch.pay("fund importer", importer, IMPORTER_ETH * WEI)
    batch.call("mintTo(importer)", token, "GiftableToken", "mintTo", importer, importer_units)
    batch.call("AccountsIndex.addWriter(importer)", accounts_index, "AccountsIndex", "addWriter", importer)
    return {"registry": registry, "accounts_index": accounts_index, "token_index": token_index,
            "token": token, "faucet": faucet, "faucet_storage": storage}


def _write_importer(state_dir: Path, importer) -> tuple:
    """The importer's v3 keyfile and its random passphrase, both 0600."""
    from cic_seed.signer import write_keyfile

    keystore = state_dir / "keystore"
    keystore.mkdir(parents=True, exist_ok=True, mode=0o700)
    passphrase = secrets.token_urlsafe(32)
    keyfile = keystore / "importer.json"
    passphrase_file = state_dir / "importer.passphrase"
    atomic_write(passphrase_file, passphrase + "\n", mode=0o600, durable=DURABLE)
    write_keyfile(keyfile, importer, passphrase, KEYFILE_ITERATIONS, durable=DURABLE)
    return keyfile, passphrase_file


def _send(rpc, batch: _Batch) -> None:
    """All signed transactions in one JSON-RPC batch; a refusal names its step."""
    from cic_seed.transactions import broadcast

    for label, error in zip(batch.labels, broadcast(rpc, batch.txs)):
        if error is not None:
            raise ChainError(f"devnet deployment: the node refused {label}: {error.message}")


def _check_receipts(rpc, batch: _Batch) -> None:
    from cic_seed.transactions import succeeded, wait_receipts

    receipts = wait_receipts(rpc, [tx.hash for tx in batch.txs], timeout=RECEIPT_TIMEOUT)
    for label, tx in zip(batch.labels, batch.txs):
        if not succeeded(receipts[tx.hash]):
            raise ChainError(f"devnet deployment failed at {label} (tx {tx.hash} reverted): "
                             "check the contract artifacts (make setup) and the anvil log")


def deploy(rpc, state_dir: Path, faucet_amount: int, importer_tokens: int) -> Deployment:
    """Deploy and wire the contracts, create and fund the importer; write ``deployment.json``.

    ``faucet_amount`` and ``importer_tokens`` are whole SRF; ``rpc`` is a cic_seed.rpc.RpcClient.
    Raises ChainError on a revert.
    """
    from cic_seed.signer import Signer

    state_dir.mkdir(parents=True, exist_ok=True)
    deployer = Signer(deployer_key())
    chain_id = rpc.chain_id()
    if rpc.balances([deployer.address])[0] < (IMPORTER_ETH + 100) * WEI:
        raise DevnetError(f"the deployer {deployer.address} (anvil dev account 0) lacks funds on {rpc.url}: "
                          "is it an anvil with the default mnemonic? stop it and run python -m devnet up")
    importer = Signer.generate()
    batch = _Batch(deployer, rpc.nonce(deployer.address, "pending"), rpc.gas_price(), chain_id)
    unit = 10 ** TOKEN_DECIMALS
    addresses = _plan(batch, importer.address, faucet_amount * unit, importer_tokens * unit)
    _send(rpc, batch)
    keyfile, passphrase_file = _write_importer(state_dir, importer)  # pbkdf2 runs while anvil mines
    _check_receipts(rpc, batch)
    deployment = Deployment(chain_id=chain_id, deployer=deployer.address, importer=importer.address,
                            keyfile=str(keyfile), passphrase_file=str(passphrase_file), **addresses)
    deployment.save(state_dir / "deployment.json")
    log.info("deployed registry %s with %s transactions", deployment.registry, len(batch.txs))
    return deployment


def is_deployed(url: str, deployment) -> bool:
    """True when the deployment's registry exists on the chain at ``url`` and resolves
    ContractRegistry to itself (plain JSON-RPC: no web3 import)."""
    if deployment is None:
        return False
    code = rpc_call(url, "eth_getCode", [deployment.registry, "latest"])
    if code in (None, "0x", ""):
        return False
    data = "0x" + ADDRESS_OF + bytes32_id("ContractRegistry").hex()
    raw = rpc_call(url, "eth_call", [{"to": deployment.registry, "data": data}, "latest"])
    return isinstance(raw, str) and raw[-40:].lower() == deployment.registry[2:].lower()


def config_text(deployment: Deployment, provider: str) -> str:
    """The confini override the scripts pick up while the devnet runs."""
    return (f"[cic]\nregistry_address = {deployment.registry}\n\n"
            f"[eth]\nprovider = {provider}\nkeyfile = {deployment.keyfile}\n"
            f"passphrase_file = {deployment.passphrase_file}\n")


def write_config(state_dir: Path, deployment: Deployment, provider: str) -> bool:
    """Write ``state_dir/config/devnet.ini``; returns False when it already said the same."""
    path = state_dir / "config" / "devnet.ini"
    text = config_text(deployment, provider)
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    atomic_write(path, text, durable=DURABLE)  # makes the folder when missing
    return True
