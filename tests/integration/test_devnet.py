"""The devnet on a real anvil: contracts deployed and wired as in the reference, the importer
wallet usable by the scripts, idempotent up, clear errors, and a down that leaves no process."""
import json
import os
import socket
import stat
import subprocess
import sys
import time

import eth_keyfile
import pytest
from eth_account import Account

from cic_seed import artifacts
from cic_seed.config import PROJECT_ROOT, load_settings
from cic_seed.meta_client import MetaClient
from cic_seed.pointers import phone_pointer
from cic_seed.rpc import RpcClient
from devnet import deploy
from devnet.network import Devnet
from devnet.process import process_alive, wait_for

pytestmark = pytest.mark.integration

ZERO = "0x0000000000000000000000000000000000000000"
SRF = 10 ** 6


def contract(w3, name, address):
    return w3.eth.contract(address=address, abi=artifacts.load_abi(name))


def test_registry_resolves_every_cic_identifier(devnet):
    dep = devnet.deployment
    registry = contract(devnet.web3(), "Registry", dep.registry)
    expected = {**dep.registry_entries(), "AddressDeclarator": ZERO, "TransferAuthorization": ZERO}
    resolved = {name: registry.functions.addressOf(name.encode().ljust(32, b"\0")).call() for name in expected}
    assert resolved == expected
    assert len(set(dep.registry_entries().values())) == 5
    assert registry.functions.identifierCount().call() == 7
    assert registry.functions.identifier(0).call() == b"ContractRegistry".ljust(32, b"\0")


def test_token_registry_finds_srf(devnet):
    dep = devnet.deployment
    w3 = devnet.web3()
    index = contract(w3, "TokenUniqueSymbolIndex", dep.token_index)
    assert index.functions.addressOf(b"SRF".ljust(32, b"\0")).call() == dep.token
    assert index.functions.addressOf(b"srf".ljust(32, b"\0")).call() == ZERO
    token = contract(w3, "GiftableToken", dep.token)
    assert (token.functions.name().call(), token.functions.symbol().call(), token.functions.decimals().call()) \
        == ("Sarafu", "SRF", 6)


def test_faucet_is_wired_and_holds_a_million_srf(devnet):
    dep = devnet.deployment
    w3 = devnet.web3()
    faucet = contract(w3, "ERC20Faucet", dep.faucet)
    token = contract(w3, "GiftableToken", dep.token)
    assert faucet.functions.token().call() == dep.token
    assert faucet.functions.tokenAmount().call() == devnet.settings.int("DEVNET_FAUCET_AMOUNT") * SRF
    assert token.functions.balanceOf(dep.faucet).call() == 1_000_000 * SRF
    assert contract(w3, "ERC20FaucetStorage", dep.faucet_storage).functions.owner().call() == dep.faucet


def test_importer_is_a_funded_writer_and_its_wallet_opens(devnet):
    dep = devnet.deployment
    settings = devnet.settings
    w3 = devnet.web3()
    assert settings.get("CIC_REGISTRY_ADDRESS") == dep.registry
    assert contract(w3, "AccountsIndex", dep.accounts_index).functions.isWriter(dep.importer).call()
    # other tests of the session spend some of it: what matters is that it was funded
    assert w3.eth.get_balance(dep.importer) > deploy.IMPORTER_ETH * 10 ** 18 // 2
    srf = contract(w3, "GiftableToken", dep.token).functions.balanceOf(dep.importer).call()
    assert srf > settings.int("DEVNET_IMPORTER_TOKENS") * SRF // 2
    keyfile, passphrase_file = settings.path("ETH_KEYFILE"), settings.path("ETH_PASSPHRASE_FILE")
    for path in (keyfile, passphrase_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    key = eth_keyfile.decode_keyfile_json(json.loads(keyfile.read_text()), passphrase_file.read_text().strip().encode())
    assert Account.from_key(key).address == dep.importer


def _send(w3, key, to, data):
    account = Account.from_key(key)
    tx = {"to": to, "data": data, "gas": 300_000, "gasPrice": w3.eth.gas_price, "chainId": w3.eth.chain_id,
          "nonce": w3.eth.get_transaction_count(account.address)}
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(Account.sign_transaction(tx, key).raw_transaction), timeout=10)
    assert receipt["status"] == 1


def test_faucet_pays_an_indexed_account_once(devnet, tmp_path):
    """A second deployment on the same chain, with a faucet amount: the store hand-over works."""
    w3 = devnet.web3()
    started = time.monotonic()
    dep = deploy.deploy(RpcClient(devnet.rpc_url), tmp_path, faucet_amount=5, importer_tokens=0)
    print(f"\ndeployment of 20 transactions: {time.monotonic() - started:.2f} s")
    passphrase = (tmp_path / "importer.passphrase").read_text().strip().encode()
    importer_key = eth_keyfile.decode_keyfile_json(json.loads((tmp_path / "keystore/importer.json").read_text()),
                                                   passphrase)
    user = Account.create().address
    index = contract(w3, "AccountsIndex", dep.accounts_index)
    faucet = contract(w3, "ERC20Faucet", dep.faucet)
    token = contract(w3, "GiftableToken", dep.token)
    _send(w3, importer_key, dep.accounts_index, index.encode_abi("add", [user]))
    assert faucet.functions.nextTime(user).call() == 0
    _send(w3, importer_key, dep.faucet, faucet.encode_abi("giveTo", [user]))
    assert token.functions.balanceOf(user).call() == 5 * SRF
    assert faucet.functions.nextTime(user).call() == 2 ** 256 - 1
    assert not faucet.functions.check(user).call()


def test_miner_readmits_a_sender_stuck_in_anvils_queued_pool(devnet):
    """anvil can leave a sender's next transaction in its queued section for good (seen under
    load); here the same state is made on purpose: nonces 5 and 6 queued, then the account's
    nonce set to 5. The devnet's watchdog must get both mined without new traffic."""
    w3 = devnet.web3()
    sender = Account.create()
    w3.provider.make_request("anvil_setBalance", [sender.address, hex(10 ** 18)])
    hashes = []
    for nonce in (5, 6):
        tx = {"nonce": nonce, "to": sender.address, "value": 0, "gas": 21000, "gasPrice": w3.eth.gas_price,
              "chainId": w3.eth.chain_id}
        hashes.append(w3.eth.send_raw_transaction(Account.sign_transaction(tx, sender.key).raw_transaction))
    w3.provider.make_request("anvil_setNonce", [sender.address, hex(5)])
    receipts = [w3.eth.wait_for_transaction_receipt(h, timeout=15, poll_latency=0.1) for h in hashes]
    assert [r["status"] for r in receipts] == [1, 1]
    assert w3.eth.get_transaction_count(sender.address) == 7


def test_up_twice_changes_nothing(devnet):
    anvil_pid = devnet.devnet.status()[0].pid
    files = [devnet.state_dir / "deployment.json", devnet.state_dir / "config" / "devnet.ini",
             devnet.state_dir / "keystore" / "importer.json"]
    before = [(path.stat().st_mtime_ns, path.read_bytes()) for path in files]
    results = devnet.devnet.up("eth")
    assert [(r.name, r.action) for r in results] == [("anvil", "running"), ("miner", "running"), ("contracts", "kept"),
                                                      ("meta", "running")]
    assert devnet.devnet.status()[0].pid == anvil_pid
    assert [(path.stat().st_mtime_ns, path.read_bytes()) for path in files] == before


def _cli(env, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "devnet", *args], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_port_taken_by_a_foreign_process_is_a_clear_error(tmp_path, fresh_devnet_env):
    env = fresh_devnet_env
    port = int(env["ETH_PROVIDER"].rsplit(":", 1)[1])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        done = _cli(env, "up")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"devnet: error: port {port} is taken by another process: stop it or set ETH_PROVIDER"]
    assert not (tmp_path / "state" / "anvil.pid").exists()


def test_cli_cold_up_again_status_down_leaves_no_process(tmp_path, fresh_devnet_env):
    env = fresh_devnet_env
    state = tmp_path / "state"
    started = time.monotonic()
    first = _cli(env, "up")
    cold = time.monotonic() - started
    assert first.returncode == 0, first.stderr
    print(f"\ncold `python -m devnet up` (process start, imports, anvil, deployment): {cold:.2f} s\n{first.stdout}")
    pid = int((state / "anvil.pid").read_text().split()[0])
    assert process_alive(pid)

    again = _cli(env, "up")
    assert again.returncode == 0 and "already up" in again.stdout
    status = _cli(env, "status")
    assert f"running  127.0.0.1:{env['ETH_PROVIDER'].rsplit(':', 1)[1]}  pid {pid}" in status.stdout
    registry = json.loads((state / "deployment.json").read_text())["registry"]
    assert f"registry   {registry}" in status.stdout

    down = _cli(env, "down")
    assert down.returncode == 0 and down.stdout.strip() == "stopped meta, miner, anvil"
    assert not process_alive(pid)
    assert not (state / "anvil.pid").exists() and not (state / "config").exists()
    assert "stopped" in _cli(env, "status").stdout


def test_up_after_anvil_died_redeploys_on_the_new_chain(tmp_path, fresh_devnet_env, monkeypatch):
    for key, value in fresh_devnet_env.items():
        monkeypatch.setenv(key, value)
    net = Devnet(load_settings(), tmp_path / "state")
    try:
        assert [r.action for r in net.up()] == ["started", "started", "deployed", "started"]
        meta = MetaClient(net.settings.get("META_URL")).open()
        pointer = phone_pointer("+254700000001")
        meta.put(pointer, "ab" * 20)
        assert meta.get(pointer) == "ab" * 20
        pid = net.status()[0].pid
        os.kill(pid, 9)
        assert wait_for(lambda: not net.status()[0].running, 10)
        # the meta server restarts with the new chain: documents about the old chain's accounts are gone
        assert [r.action for r in net.up()] == ["started", "running", "deployed", "started"]
        assert net.status()[0].pid != pid
        assert MetaClient(net.settings.get("META_URL")).open().get(pointer) is None
    finally:
        net.down()
    assert not any(s.running for s in net.status())
