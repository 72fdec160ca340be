"""The lean signer must produce exactly the bytes eth-account produces."""
import json
import os

import pytest
from eth_account import Account

from cic_seed.errors import WalletError
from cic_seed.signer import Signer, load_keyfile, write_keyfile


@pytest.mark.parametrize("data,value", [(b"", 1), (bytes.fromhex("0a3b0a4f") + bytes(32), 0)])
def test_signature_matches_eth_account(data, value):
    key = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
    signer = Signer(key)
    to = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    ours = signer.sign(nonce=7, gas_price=2_000_000_000, gas=200_000, to=to, value=value, data=data, chain_id=8996)
    theirs = Account.from_key(key).sign_transaction(dict(nonce=7, gasPrice=2_000_000_000, gas=200_000, to=to,
                                                         value=value, data=data, chainId=8996))
    assert ours.raw == theirs.raw_transaction
    assert ours.hash == "0x" + theirs.hash.hex().removeprefix("0x")
    assert signer.address == Account.from_key(key).address


def test_contract_creation_matches_eth_account():
    key = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
    init_code = bytes.fromhex("6080604052348015600f57600080fd5b50")
    ours = Signer(key).sign(nonce=0, gas_price=1_000_000_000, gas=3_000_000, to=None, data=init_code, chain_id=8996)
    theirs = Account.from_key(key).sign_transaction(dict(nonce=0, gasPrice=1_000_000_000, gas=3_000_000, value=0,
                                                         data=init_code, chainId=8996))
    assert ours.raw == theirs.raw_transaction
    assert ours.hash == "0x" + theirs.hash.hex().removeprefix("0x")


def test_keyfile_round_trip_is_private(tmp_path):
    signer = Signer.generate()
    path = tmp_path / "key.json"
    write_keyfile(path, signer, "foo", iterations=16)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_keyfile(path, "foo").address == signer.address
    assert signer.private_key.hex() not in path.read_text()
    assert signer.private_key.hex() not in repr(signer)


def test_wrong_passphrase_is_a_wallet_error(tmp_path):
    path = tmp_path / "key.json"
    write_keyfile(path, Signer.generate(), "foo", iterations=16)
    with pytest.raises(WalletError, match="wrong passphrase"):
        load_keyfile(path, "bar")
    (tmp_path / "broken.json").write_text(json.dumps({"nope": 1}))
    with pytest.raises(WalletError, match="not a v3 keyfile"):
        load_keyfile(tmp_path / "broken.json", "foo")
