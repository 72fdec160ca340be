"""Keys and transaction signing.

Signing goes straight through rlp and coincurve: eth-account's ``sign_transaction`` spends
~0.8 ms per transaction in validation, five times the cost of the signature itself, and
import_users signs three transactions per user. ``tests/unit/test_signer.py`` proves the
bytes equal eth-account's. Keyfiles use eth-keyfile (v3).
"""
import json
import os
from dataclasses import dataclass
from pathlib import Path

import coincurve
import rlp
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

from .errors import WalletError
from .files import atomic_write


@dataclass(frozen=True)
class SignedTx:
    raw: bytes
    hash: str  # 0x-prefixed hex
    nonce: int


class Signer:
    """One private key; signs EIP-155 legacy transactions (bloxberg was a pre-London PoA chain)."""

    def __init__(self, private_key: bytes):
        self._key = coincurve.PrivateKey(private_key)
        public = self._key.public_key.format(compressed=False)[1:]
        self.address = to_checksum_address(keccak(public)[-20:])

    @classmethod
    def generate(cls) -> "Signer":
        return cls(os.urandom(32))

    @property
    def private_key(self) -> bytes:
        return self._key.secret

    def sign(self, *, nonce: int, gas_price: int, gas: int, to: str | None, value: int = 0,
             data: bytes = b"", chain_id: int) -> SignedTx:
        """``to=None`` creates a contract (``data`` is its init code): the ``to`` field stays empty."""
        to_bytes = b"" if to is None else bytes.fromhex(to[2:])
        unsigned = [nonce, gas_price, gas, to_bytes, value, data, chain_id, 0, 0]
        signature = self._key.sign_recoverable(keccak(rlp.encode(unsigned)), hasher=None)
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:64], "big")
        v = signature[64] + 35 + 2 * chain_id
        raw = rlp.encode([nonce, gas_price, gas, to_bytes, value, data, v, r, s])
        return SignedTx(raw, "0x" + keccak(raw).hex(), nonce)

    def keyfile_json(self, password: str, iterations: int) -> dict:
        import eth_keyfile  # imported when used: it pulls in py_ecc, over a second of start-up
        return eth_keyfile.create_keyfile_json(self.private_key, password.encode(), kdf="pbkdf2",
                                               iterations=iterations)

    def __repr__(self):  # never show the key
        return f"Signer({self.address})"


def load_keyfile(path: Path, passphrase: str) -> Signer:
    """Decrypt a v3 keyfile; a wrong passphrase or a broken file is a WalletError."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise WalletError(f"keyfile {path} not found: pass -y/--key-file or set ETH_KEYFILE") from None
    except (OSError, ValueError) as e:
        raise WalletError(f"keyfile {path} is not a v3 keyfile ({e})") from None
    import eth_keyfile
    try:
        return Signer(eth_keyfile.decode_keyfile_json(data, passphrase.encode()))
    except ValueError:
        raise WalletError(f"wrong passphrase for keyfile {path}: check ETH_PASSPHRASE or --passphrase-file") from None
    except (KeyError, TypeError):
        raise WalletError(f"keyfile {path} is not a v3 keyfile") from None


def write_keyfile(path: Path, signer: Signer, password: str, iterations: int, durable: bool = True) -> None:
    """Write a v3 keyfile readable by its owner only (0600), atomically; ``durable`` also fsyncs it."""
    atomic_write(path, json.dumps(signer.keyfile_json(password, iterations)), mode=0o600, durable=durable)


def wallet_passphrase(settings) -> str:
    """The importer wallet's passphrase: ETH_PASSPHRASE, else the file ETH_PASSPHRASE_FILE."""
    value = settings.get("ETH_PASSPHRASE")
    if value is not None:
        return value
    path = settings.path("ETH_PASSPHRASE_FILE")
    if path is None:
        return ""
    try:
        return path.read_text().strip()
    except OSError as e:
        raise WalletError(f"cannot read passphrase file {path}: {e.strerror}") from None


def load_wallet(settings) -> Signer:
    keyfile = settings.path("ETH_KEYFILE")
    if keyfile is None:
        raise WalletError("no importer wallet: pass -y/--key-file or set ETH_KEYFILE (make devnet-up sets it)")
    return load_keyfile(keyfile, wallet_passphrase(settings))
