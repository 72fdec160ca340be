"""Pure parts of the devnet: command lines, settings parsing, encodings, the CLI without a chain,
and the artifact extraction (no network, no anvil)."""
import io
import tarfile
from pathlib import Path

import pytest

from cic_seed import artifacts
from cic_seed.config import load_settings
from cic_seed.contracts import bytes32_id
from cic_seed.errors import ConfigError
from devnet import __main__ as cli
from devnet import anvil, deploy, network
from devnet.process import DevnetError


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for key in ("ETH_PROVIDER", "CIC_CHAIN_SPEC", "CIC_REGISTRY_ADDRESS", "ETH_KEYFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DEVNET_STATE_DIR", str(tmp_path / "state"))
    return monkeypatch


def test_anvil_command_is_local_fast_and_mined_by_the_devnet_miner():
    command = anvil.build_command("/x/anvil", 63545, 8996)
    assert command[0] == "/x/anvil"
    args = " ".join(command[1:])
    for expected in ("--host 127.0.0.1", "--port 63545", "--chain-id 8996", "--no-request-size-limit",
                     "--order fifo", f"--gas-limit {anvil.BLOCK_GAS_LIMIT}", "--quiet", "--no-mining"):
        assert expected in args
    assert "--block-time" not in args and "--prune-history" not in args


def test_anvil_service_takes_port_and_chain_id_from_the_settings(clean_env, tmp_path):
    clean_env.setenv("ETH_PROVIDER", "http://localhost:61234")
    clean_env.setenv("CIC_CHAIN_SPEC", "evm:bloxberg:5050")
    service = anvil.service(load_settings(use_devnet=False), tmp_path)
    assert service.port == 61234 and service.port_key == "ETH_PROVIDER"
    assert service.command[service.command.index("--chain-id") + 1] == "5050"
    assert service.pidfile == tmp_path / "anvil.pid" and not service.pidfile.exists()


def test_defaults_are_the_cluster_ports(clean_env, tmp_path):
    settings = load_settings(use_devnet=False)
    assert anvil.provider_port(settings.get("ETH_PROVIDER")) == 63545
    assert anvil.chain_id(settings) == 8996


@pytest.mark.parametrize("url, problem", [
    ("http://10.1.2.3:8545", "not a local http URL"),
    ("https://localhost:8545", "not a local http URL"),
    ("", "not a local http URL"),
    ("http://localhost", "has no port"),
])
def test_provider_that_is_not_local_is_refused(url, problem):
    with pytest.raises(DevnetError, match=problem):
        anvil.provider_port(url)


def test_missing_anvil_says_run_make_setup(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DevnetError, match="^anvil not found: run make setup$"):
        anvil.find_anvil(tmp_path)


def test_bytes32_is_left_aligned_utf8():
    assert "0x" + bytes32_id("AccountRegistry").hex() == \
        "0x4163636f756e7452656769737472790000000000000000000000000000000000"
    assert bytes32_id("SRF").hex() == "535246" + "00" * 29
    with pytest.raises(ValueError):
        bytes32_id("x" * 33)


def test_deployer_is_anvil_dev_account_0_and_create_addresses_follow_the_nonce():
    from eth_account import Account

    deployer = Account.from_key(deploy.deployer_key()).address
    assert deployer == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert deploy.create_address(deployer, 0) == "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    assert deploy.create_address(deployer, 1) == "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"


def test_config_override_is_read_by_load_settings(clean_env, tmp_path):
    state = tmp_path / "state"
    dep = deploy.Deployment(8996, *(f"0x{n:040x}" for n in range(1, 9)), keyfile=str(state / "k.json"),
                            passphrase_file=str(state / "p"))
    assert deploy.write_config(state, dep, "http://localhost:63545") is True
    assert deploy.write_config(state, dep, "http://localhost:63545") is False
    settings = load_settings()
    assert settings.get("CIC_REGISTRY_ADDRESS") == dep.registry
    assert settings.path("ETH_KEYFILE") == state / "k.json"
    assert settings.path("ETH_PASSPHRASE_FILE") == state / "p"
    dep.save(state / "deployment.json")
    assert deploy.Deployment.load(state / "deployment.json") == dep
    assert deploy.Deployment.load(state / "missing.json") is None


def test_every_backend_starts_the_chain_first():
    for backend, steps in network.BACKEND_STEPS.items():
        assert [s.name for s in steps[:3]] == ["anvil", "miner", "contracts"], backend
    names = [s.name for s in network.all_services()]
    assert names[0] == "anvil" and len(names) == len(set(names))


def test_unknown_backend_is_a_usage_error(clean_env, tmp_path):
    with pytest.raises(DevnetError, match="unknown backend 'bitcoin'"):
        network.Devnet(load_settings(), tmp_path).up("bitcoin")
    with pytest.raises(SystemExit) as stop:
        cli.main(["up", "--backend", "bitcoin"])
    assert stop.value.code == 2


def test_auto_up_uses_a_configured_registry_and_starts_nothing(clean_env, tmp_path, capsys):
    clean_env.setenv("CIC_REGISTRY_ADDRESS", "0x" + "ab" * 20)
    assert cli.main(["auto-up"]) == 0
    assert capsys.readouterr().out.startswith("using the configured network: registry 0x" + "ab" * 20)
    assert not (tmp_path / "state").exists()


def test_status_and_down_of_a_devnet_that_never_ran(clean_env, capsys):
    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["anvil", "stopped", "127.0.0.1:63545"]
    assert out[-1].split() == ["registry", "-"]
    assert cli.main(["down"]) == 0
    assert capsys.readouterr().out.strip() == "nothing was running"


def _sdist(path: Path, top: str, files: dict) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_extract_takes_only_the_named_bin_and_json(tmp_path):
    sdist = _sdist(tmp_path / "eth-thing-1.0.tar.gz", "eth-thing-1.0", {
        "eth_thing/data/Thing.bin": b"6080ff\n",
        "eth_thing/data/Thing.json": b'[{"type": "constructor", "inputs": []}]',
        "eth_thing/data/Thing.metadata.json": b"{}",
        "eth_thing/data/Other.bin": b"00",
        "eth_thing/runnable/Thing.bin": b"11",
    })
    dest = tmp_path / "out"
    dest.mkdir()
    artifacts._extract(sdist, "eth_thing", ["Thing"], dest)
    assert sorted(p.name for p in dest.iterdir()) == ["Thing.bin", "Thing.json"]
    with pytest.raises(ConfigError, match="lacks Missing.bin, Missing.json"):
        artifacts._extract(sdist, "eth_thing", ["Missing"], dest)


def test_fetch_is_a_no_op_once_fetched(tmp_path, monkeypatch):
    folder = artifacts.contracts_dir(tmp_path)
    folder.mkdir(parents=True)
    for name in artifacts.CONTRACTS:
        (folder / f"{name}.bin").write_text("00")
        (folder / f"{name}.json").write_text("[]")
    (folder / artifacts.MARKER).touch()

    def no_download(*args):
        raise AssertionError("fetch downloaded although everything is there")

    monkeypatch.setattr(artifacts, "_download", no_download)
    assert artifacts.fetch(tmp_path) == folder


def test_missing_artifacts_say_run_make_setup(tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts, "CACHE_DIR", tmp_path)
    artifacts.load_abi.cache_clear()
    try:
        with pytest.raises(ConfigError, match="^contract artifacts missing: run make setup$"):
            artifacts.load_abi("Registry")
        with pytest.raises(ConfigError, match="unknown contract"):
            artifacts.load_bytecode("Nope")
    finally:
        artifacts.load_abi.cache_clear()


def test_fetched_artifacts_are_the_real_contracts():
    """make setup fetched them; the constructors are the ones the deployment encodes for."""
    constructors = {name: [i["type"] for e in artifacts.load_abi(name) if e["type"] == "constructor"
                           for i in e["inputs"]] for name in artifacts.CONTRACTS}
    assert constructors == {
        "Registry": ["bytes32[]"], "AccountsIndex": [], "TokenUniqueSymbolIndex": [],
        "GiftableToken": ["string", "string", "uint8", "uint256"], "ERC20FaucetStorage": [],
        "ERC20Faucet": ["address", "address", "address"]}
    assert all(len(artifacts.load_bytecode(name)) > 1000 for name in artifacts.CONTRACTS)


def test_miner_command_watches_the_devnet_anvil():
    from devnet import miner
    command = miner.build_command("http://127.0.0.1:63545", 0.5, python="python3")
    assert command == ["python3", "-m", "devnet.miner", "--url", "http://127.0.0.1:63545", "--max-delay", "0.5"]
