"""Bad input to the eth path: one clear line, a non-zero exit, nothing half done."""
import pytest

from cic_seed.contracts import ACCOUNTS_INDEX, function
from cic_seed.rpc import RpcClient
from cic_seed.signer import Signer, write_keyfile
from cic_seed.transactions import send_all, wait_receipts
from devnet.deploy import deployer_key

from scriptrun import create_users, run_script
from test_eth_import import META_CHECKS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def datadir(devnet, tmp_path_factory):
    path = tmp_path_factory.mktemp("bad") / "out"
    create_users(path, 5, devnet.env, seed=21, threshold=10)
    run_script("scripts/record_height.py", path, env=devnet.env, check=True)
    return path


def wallet_env(devnet, tmp_path, signer):
    keyfile = tmp_path / "wallet.json"
    write_keyfile(keyfile, signer, "pw", iterations=16)
    return dict(devnet.env, ETH_KEYFILE=str(keyfile), ETH_PASSPHRASE="pw")


def send_from(devnet, key, to, data=b"", value=0):
    rpc = RpcClient(devnet.rpc_url)
    signer = Signer(key)
    tx = signer.sign(nonce=rpc.nonce(signer.address), gas_price=rpc.gas_price() * 2, gas=200_000, to=to,
                     value=value, data=data, chain_id=rpc.chain_id())
    send_all(rpc, [tx], "test setup")
    wait_receipts(rpc, [tx.hash])


def assert_one_line_error(result, code, *fragments):
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("args,code,fragment", [
    (["-p", "http://127.0.0.1:9"], 1, "cannot reach the EVM node at http://127.0.0.1:9"),
    (["-i", "evm:bloxberg:1234"], 2, "runs chain id 8996, but the chain spec evm:bloxberg:1234 says 1234"),
    (["-i", "bloxberg"], 2, "invalid chain spec"),
    (["-r", "0x000000000000000000000000000000000000dEaD"], 2, "no contract at registry address"),
    (["-r", "0xnothex"], 2, "is not an address"),
])
@pytest.mark.parametrize("script", ["eth/import_users.py", "eth/import_balance.py", "scripts/verify.py"])
def test_wrong_network_settings(devnet, datadir, script, args, code, fragment):
    assert_one_line_error(run_script(script, *args, datadir, env=devnet.env), code, fragment)


def test_registry_without_the_cic_entries(devnet, datadir):
    w3 = devnet.web3()
    from cic_seed import artifacts
    from cic_seed.contracts import bytes32_id
    ids = [bytes32_id(n) for n in ("ContractRegistry", "AccountRegistry", "TokenRegistry", "Faucet", "DefaultToken")]
    contract = w3.eth.contract(abi=artifacts.load_abi("Registry"), bytecode=artifacts.load_bytecode("Registry"))
    tx_hash = contract.constructor(ids).transact({"from": w3.eth.accounts[1]})  # an anvil dev account
    empty = w3.eth.wait_for_transaction_receipt(tx_hash).contractAddress
    result = run_script("eth/import_users.py", "-r", empty, datadir, env=devnet.env)
    assert_one_line_error(result, 2, "has no entry for AccountRegistry, TokenRegistry, Faucet, DefaultToken")


def test_unknown_token_symbol(devnet, datadir):
    result = run_script("eth/import_balance.py", "--token-symbol", "srf", datadir, env=devnet.env)
    assert_one_line_error(result, 2, "token symbol 'srf' is not in the TokenRegistry")


def test_wrong_keyfile_passphrase(devnet, datadir):
    env = dict(devnet.env, ETH_PASSPHRASE="not-it")
    assert_one_line_error(run_script("eth/import_users.py", datadir, env=env), 2, "wrong passphrase for keyfile")


def test_missing_keyfile(devnet, datadir, tmp_path):
    env = dict(devnet.env, ETH_KEYFILE=str(tmp_path / "nope.json"))
    assert_one_line_error(run_script("eth/import_balance.py", datadir, env=env), 2, "nope.json not found")


def test_wallet_that_is_not_a_writer(devnet, datadir, tmp_path):
    env = wallet_env(devnet, tmp_path, Signer.generate())
    result = run_script("eth/import_users.py", datadir, env=env)
    assert_one_line_error(result, 2, "is not a writer on the AccountsIndex", "addWriter")
    assert not (datadir / "new").exists()


def test_writer_wallet_without_gas_says_how_much(devnet, datadir, tmp_path):
    signer = Signer.generate()
    send_from(devnet, deployer_key(), devnet.deployment.accounts_index,
              function(ACCOUNTS_INDEX, "addWriter").data(signer.address))
    result = run_script("eth/import_users.py", datadir, env=wallet_env(devnet, tmp_path, signer))
    assert_one_line_error(result, 2, f"wallet {signer.address} holds 0.000000 of the native coin", "send it at least")


def test_wallet_without_tokens_says_how_much(devnet, datadir, tmp_path):
    signer = Signer.generate()
    send_from(devnet, deployer_key(), signer.address, value=10**18)
    run_script("eth/import_users.py", datadir, env=devnet.env, check=True)
    result = run_script("eth/import_balance.py", datadir, env=wallet_env(devnet, tmp_path, signer))
    assert_one_line_error(result, 2, "holds 0.000000 SRF but the opening balances need", "send it at least")
    # the right wallet then finishes the job
    run_script("eth/import_balance.py", datadir, env=devnet.env, check=True)
    assert run_script("scripts/verify.py", "--exclude", "local_key", "--exclude", META_CHECKS, datadir,
                      env=devnet.env).returncode == 0


def test_datadir_of_another_chain_is_refused(devnet, tmp_path):
    """A datadir seeded on a devnet that was restarted since: its users are on a chain that is gone."""
    path = tmp_path / "out"
    create_users(path, 2, devnet.env, seed=23)
    run_script("scripts/record_height.py", path, env=devnet.env, check=True)
    height_file = path / ".block_height"
    assert run_script("scripts/record_height.py", path, env=devnet.env, check=True).stdout.startswith("block height")
    height_file.write_text(height_file.read_text().split("\n")[0] + "\ngenesis 0x" + "11" * 32 + "\n")
    result = run_script("scripts/record_height.py", path, env=devnet.env)
    assert_one_line_error(result, 2, "was seeded on another chain", "seed a new datadir")


def test_corrupt_balances_line_is_reported(devnet, tmp_path):
    path = tmp_path / "out"
    create_users(path, 4, devnet.env, seed=22)
    run_script("scripts/record_height.py", path, env=devnet.env, check=True)
    lines = (path / "balances.csv").read_text().splitlines()
    lines[1] = lines[1].split(",")[0] + ",lots"
    (path / "balances.csv").write_text("\n".join(lines) + "\n")
    run_script("eth/import_users.py", path, env=devnet.env, check=True)
    result = run_script("eth/import_balance.py", "--idle-timeout", 3, path, env=devnet.env)
    assert result.returncode == 1
    assert "balances.csv line 2" in result.stderr
    assert "Traceback" not in result.stderr
