"""Metadata scripts and helpers that need no services: CLI, commands, small pure functions."""
import importlib.util
import sys
from pathlib import Path

import pytest

from cic_seed.cli import run
from cic_seed.config import load_settings
from cic_seed.errors import UsageError
from cic_seed.meta_client import MetaClient, unsigned
from cic_seed.meta_import import Outcome, normalize_address, problems
from cic_seed.pgp import PgpSigner, signer_from_settings
from devnet import meta_server

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["cic_meta/import_meta.py", "cic_meta/import_meta_phone.py"]


def load_script(path):
    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", SCRIPTS)
def test_help(path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_script(path).main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--meta-provider" in out and "--follow" in out and "--workers" in out


@pytest.mark.parametrize("path", SCRIPTS)
def test_meta_provider_reaches_the_settings(path, capsys):
    code = run(load_script(path).main, ["--meta-provider", "http://meta.example:1234", "--print-config", "d"])
    out = capsys.readouterr().out
    assert code == 0 and "META_URL=http://meta.example:1234" in out


@pytest.mark.parametrize("path", SCRIPTS)
def test_missing_datadir_argument_is_a_usage_error(path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_script(path).main([])
    assert exit_info.value.code == 2


def test_scripts_are_thin():
    for path in SCRIPTS:
        text = (ROOT / path).read_text()
        assert len(text.splitlines()) < 150
        assert 'if __name__ == "__main__":\n    sys.exit(run(main))' in text


@pytest.mark.parametrize("url, host, port", [
    ("http://localhost:63380", "127.0.0.1", 63380),
    ("http://127.0.0.1:5555", "127.0.0.1", 5555),
    ("http://0.0.0.0", "0.0.0.0", 63380),
])
def test_listen_address(url, host, port):
    settings = load_settings(flags={"META_URL": url}, use_devnet=False)
    assert meta_server.listen_address(settings) == (host, port)


def test_build_command_and_service(tmp_path):
    settings = load_settings(flags={"META_URL": "http://localhost:7001"}, use_devnet=False)
    command = meta_server.build_command(settings, tmp_path)
    assert command == [sys.executable, "-m", "devnet.meta_server", "--host", "127.0.0.1", "--port", "7001",
                       "--db", str(tmp_path / "meta.sqlite")]
    service = meta_server.service(settings, tmp_path)
    assert (service.name, service.port, service.host, service.command) == ("meta", 7001, "127.0.0.1", command)
    assert not (tmp_path / "meta.sqlite").exists()  # constructors do no I/O


def test_db_path_from_devnet_meta_db(tmp_path):
    settings = load_settings(flags={"DEVNET_META_DB": str(tmp_path / "x.db")}, use_devnet=False)
    assert meta_server.db_path(settings, tmp_path / "state") == tmp_path / "x.db"


def test_default_meta_url_is_63380():
    settings = load_settings(use_devnet=False)
    assert meta_server.listen_address(settings)[1] == 63380


@pytest.mark.parametrize("value, expected", [
    ('"6564e2f8"', "6564E2F8"), ("0xAbC", "ABC"), ("abc", "ABC"), ("  0Xdef ", "DEF"),
])
def test_normalize_address(value, expected):
    assert normalize_address(value) == expected


@pytest.mark.parametrize("url", ["", "ftp://x", "localhost:63380", "http://", "http://host:port"])
def test_client_rejects_bad_urls(url):
    with pytest.raises(UsageError, match="META_URL"):
        MetaClient(url).open()


def test_client_constructor_does_no_io():
    client = MetaClient("http://127.0.0.1:1")
    assert client.url == "http://127.0.0.1:1"
    client.close()


def test_unsigned_signature_object():
    assert unsigned("W10=") == {"engine": "pgp", "algo": "sha256", "data": "", "digest": "W10="}


def test_signing_is_off_by_default():
    assert signer_from_settings(load_settings(use_devnet=False)) is None
    settings = load_settings(flags={"PGP_SIGN": "true", "PGP_PASSPHRASE": "x"}, use_devnet=False)
    signer = signer_from_settings(settings)
    assert isinstance(signer, PgpSigner) and signer.gpg is None


def test_problems_are_capped():
    outcome = Outcome(failed=[f"user {i}" for i in range(25)])
    lines = problems(outcome, shown=20)
    assert len(lines) == 21 and lines[-1] == "... and 5 more"


def test_outcome_timing():
    assert Outcome(uploaded=10, elapsed=2.0).timing() == "10 users in 2.0 s (5 users/s)"
