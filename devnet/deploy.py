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

Importing web3 and eth-account takes seconds, so only the functions that deploy import them;
``Deployment``, ``is_deployed`` and ``write_config`` (all that a no-op ``up`` needs) do not.
"""
import json
import logging
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from cic_seed import artifacts
from cic_seed.contracts import bytes32_id
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
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path):
        """The deployment saved at path, or None when there is none (or it is unreadable)."""
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None


class _Batch:
    """Transactions of one sender with consecutive nonces, signed locally."""

    def __init__(self, key: bytes, nonce: int, gas_price: int, chain_id: int):
        from eth_account import Account

        self.account = Account
        self.key = key
        self.sender = Account.from_key(key).address
        self.nonce = nonce
        self.gas_price = gas_price
        self.chain_id = chain_id
        self.signed = []  # (label, signed transaction)

    def _sign(self, label, to, data=b"", value=0, gas=CALL_GAS):
        tx = {"nonce": self.nonce, "gasPrice": self.gas_price, "gas": gas, "value": value,
              "data": data, "chainId": self.chain_id}
        if to is not None:
            tx["to"] = to
        self.signed.append((label, self.account.sign_transaction(tx, self.key)))
        self.nonce += 1

    def create(self, name: str, types=(), args=()) -> str:
        """Deploy artifact ``name`` with constructor args; returns its future address."""
        import eth_abi

        address = create_address(self.sender, self.nonce)
        data = artifacts.load_bytecode(name) + eth_abi.encode(list(types), list(args))
        self._sign(f"deploy {name}", None, data, gas=DEPLOY_GAS)
        return address

    def call(self, label: str, address: str, selector: str, types=(), args=()):
        """A state-changing call ``selector(types...)`` on ``address``."""
        import eth_abi
        from eth_utils import keccak

        data = keccak(text=f"{selector}({','.join(types)})")[:4] + eth_abi.encode(list(types), list(args))
        self._sign(label, address, data)

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
    batch.call("AccountsIndex.addWriter(deployer)", accounts_index, "addWriter", ["address"], [deployer])
    batch.call("TokenIndex.addWriter(deployer)", token_index, "addWriter", ["address"], [deployer])
    batch.call("TokenIndex.register(token)", token_index, "register", ["address"], [token])
    batch.call("FaucetStorage.transferOwnership(faucet)", storage, "transferOwnership", ["address"], [faucet])
    batch.call("mintTo(faucet)", token, "mintTo", ["address", "uint256"],
               [faucet, FAUCET_FUNDING_TOKENS * 10 ** TOKEN_DECIMALS])
    batch.call("Faucet.setAmount", faucet, "setAmount", ["uint256"], [faucet_units])
    entries = {"ContractRegistry": registry, "AccountRegistry": accounts_index, "TokenRegistry": token_index,
               "Faucet": faucet, "DefaultToken": token}
    for identifier, address in entries.items():
        batch.call(f"Registry.set({identifier})", registry, "set", ["bytes32", "address"],
                   [bytes32_id(identifier), address])
    batch.pay("fund importer", importer, IMPORTER_ETH * WEI)
    batch.call("mintTo(importer)", token, "mintTo", ["address", "uint256"], [importer, importer_units])
    batch.call("AccountsIndex.addWriter(importer)", accounts_index, "addWriter", ["address"], [importer])
    return {"registry": registry, "accounts_index": accounts_index, "token_index": token_index,
            "token": token, "faucet": faucet, "faucet_storage": storage}


def _write_secret(path: Path, text: str) -> None:
    """Write a file readable by its owner only (0600), atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _write_importer(state_dir: Path, key: bytes) -> tuple:
    """The importer's v3 keyfile and its random passphrase, both 0600."""
    import eth_keyfile

    keystore = state_dir / "keystore"
    keystore.mkdir(parents=True, exist_ok=True, mode=0o700)
    passphrase = secrets.token_urlsafe(32)
    keyfile = keystore / "importer.json"
    passphrase_file = state_dir / "importer.passphrase"
    _write_secret(passphrase_file, passphrase + "\n")
    document = eth_keyfile.create_keyfile_json(key, passphrase.encode(), kdf="pbkdf2",
                                               iterations=KEYFILE_ITERATIONS)
    _write_secret(keyfile, json.dumps(document))
    return keyfile, passphrase_file


def _send(w3, batch: _Batch) -> None:
    """All signed transactions in one JSON-RPC batch (web3's batch API refuses sends)."""
    calls = [("eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex()]) for _, signed in batch.signed]
    answers = w3.provider.make_batch_request(calls)
    if not isinstance(answers, list):
        answers = [answers]
    for (label, _), answer in zip(batch.signed, answers):
        if "error" in answer:
            message = answer["error"].get("message", answer["error"])
            raise ChainError(f"devnet deployment: the node refused {label}: {message}")


def _check_receipts(w3, batch: _Batch) -> None:
    last = batch.signed[-1][1].hash
    w3.eth.wait_for_transaction_receipt(last, timeout=RECEIPT_TIMEOUT, poll_latency=0.02)
    with w3.batch_requests() as requests:
        for _, signed in batch.signed:
            requests.add(w3.eth.get_transaction_receipt(signed.hash))
        receipts = requests.execute()
    for (label, signed), receipt in zip(batch.signed, receipts):
        if receipt["status"] != 1:
            raise ChainError(f"devnet deployment failed at {label} (tx 0x{bytes(signed.hash).hex()} reverted): "
                             "check the contract artifacts (make setup) and the anvil log")


def deploy(w3, state_dir: Path, faucet_amount: int, importer_tokens: int) -> Deployment:
    """Deploy and wire the contracts, create and fund the importer; write ``deployment.json``.

    ``faucet_amount`` and ``importer_tokens`` are whole SRF; ``w3`` is a web3.Web3.
    Raises ChainError on a revert.
    """
    from eth_account import Account

    state_dir.mkdir(parents=True, exist_ok=True)
    key = deployer_key()
    chain_id = w3.eth.chain_id
    deployer = Account.from_key(key).address
    if w3.eth.get_balance(deployer) < (IMPORTER_ETH + 100) * WEI:
        raise DevnetError(f"the deployer {deployer} (anvil dev account 0) lacks funds on {w3.provider.endpoint_uri}: "
                          "is it an anvil with the default mnemonic? stop it and run python -m devnet up")
    importer_key = secrets.token_bytes(32)
    importer = Account.from_key(importer_key).address
    batch = _Batch(key, w3.eth.get_transaction_count(deployer, "pending"), w3.eth.gas_price, chain_id)
    unit = 10 ** TOKEN_DECIMALS
    addresses = _plan(batch, importer, faucet_amount * unit, importer_tokens * unit)
    _send(w3, batch)
    keyfile, passphrase_file = _write_importer(state_dir, importer_key)  # pbkdf2 runs while anvil mines
    _check_receipts(w3, batch)
    deployment = Deployment(chain_id=chain_id, deployer=deployer, importer=importer, keyfile=str(keyfile),
                            passphrase_file=str(passphrase_file), **addresses)
    deployment.save(state_dir / "deployment.json")
    log.info("deployed registry %s with %s transactions", deployment.registry, len(batch.signed))
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
    folder = state_dir / "config"
    path = folder / "devnet.ini"
    text = config_text(deployment, provider)
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True
