"""Bytecode and ABIs of the real CIC contracts, read from their pinned PyPI sdists.

The sdists' Python modules need old chainlib releases that conflict with each other, so they
are never installed: ``fetch`` downloads the sdists with pip at set-up time and extracts only
the ``<module>/data/<Contract>.bin|.json`` files into ``.cache/contracts/``. Nothing here is
committed; ``make setup`` runs ``python -m cic_seed.artifacts fetch``.
"""
import argparse
import json
import logging
import os
import subprocess
import sys
import tarfile
from functools import lru_cache
from pathlib import Path

from .config import PROJECT_ROOT
from .errors import ConfigError, ServiceUnavailable

log = logging.getLogger(__name__)

CACHE_DIR = PROJECT_ROOT / ".cache"

# pinned sdist -> (module folder holding data/, contracts taken from it)
PACKAGES = {
    "eth-contract-registry==0.11.0": ("eth_contract_registry", ("Registry",)),
    "eth-accounts-index==0.6.0": ("eth_accounts_index", ("AccountsIndex",)),
    "eth-token-index==0.6.3": ("eth_token_index", ("TokenUniqueSymbolIndex",)),
    "eth-erc20==0.9.0": ("giftable_erc20_token", ("GiftableToken",)),
    "erc20-faucet==0.8.0": ("erc20_faucet", ("ERC20Faucet", "ERC20FaucetStorage")),
}
CONTRACTS = tuple(name for _, names in PACKAGES.values() for name in names)
MARKER = ".fetched"
MISSING_HINT = "contract artifacts missing: run make setup"


def contracts_dir(cache_dir=None) -> Path:
    """Folder holding ``<Contract>.bin`` and ``<Contract>.json``."""
    return Path(cache_dir or CACHE_DIR) / "contracts"


def _wanted_files():
    return [f"{name}{ext}" for name in CONTRACTS for ext in (".bin", ".json")]


def is_fetched(cache_dir=None) -> bool:
    """True when every artifact and the marker file are in place."""
    folder = contracts_dir(cache_dir)
    return (folder / MARKER).is_file() and all((folder / f).is_file() for f in _wanted_files())


def _normal(name: str) -> str:
    return name.lower().replace("_", "-")


def _sdist_path(sdist_dir: Path, requirement: str):
    """The downloaded sdist of ``name==version`` in sdist_dir, or None."""
    name, version = requirement.split("==")
    prefix = f"{_normal(name)}-{version}.tar.gz"
    for path in sdist_dir.glob("*.tar.gz"):
        if _normal(path.name) == prefix:
            return path
    return None


def _pip_download(requirement: str, sdist_dir: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", "-q", "-d", str(sdist_dir), requirement]
    log.info("downloading %s", requirement)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)


def _download(requirements, sdist_dir: Path) -> None:
    """``pip download --no-deps`` the requirements, one pip per CPU at a time.

    pip prepares each sdist's metadata in a fresh build environment, which is CPU-bound,
    so more processes than cores only slow each other down.
    """
    sdist_dir.mkdir(parents=True, exist_ok=True)
    waiting = list(requirements)
    running = []
    failures = []
    while waiting or running:
        while waiting and len(running) < max(1, os.cpu_count() or 1):
            requirement = waiting.pop(0)
            running.append((requirement, _pip_download(requirement, sdist_dir)))
        requirement, proc = running.pop(0)
        _, err = proc.communicate()
        if proc.returncode != 0:
            lines = [line.strip() for line in err.splitlines() if line.strip() and "is ignored" not in line]
            failures.append(f"{requirement} ({lines[-1] if lines else 'exit ' + str(proc.returncode)})")
    if failures:
        raise ServiceUnavailable("pip download failed for " + "; ".join(failures)
                                 + ": check the network access to PyPI and run make setup again")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _extract(sdist: Path, module: str, names, dest: Path) -> None:
    """Copy ``<top>/<module>/data/<name>.bin|.json`` out of the sdist, checking their contents."""
    wanted = {f"{name}{ext}" for name in names for ext in (".bin", ".json")}
    found = {}
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 4 and parts[1:3] == [module, "data"] and parts[3] in wanted:
                found[parts[3]] = tar.extractfile(member).read()
    missing = sorted(wanted - set(found))
    if missing:
        raise ConfigError(f"{sdist.name} lacks {', '.join(missing)}: delete {sdist} and run make setup again")
    for filename, data in found.items():
        if filename.endswith(".bin"):
            bytes.fromhex(data.decode().strip().removeprefix("0x"))
        elif not isinstance(json.loads(data), list):
            raise ConfigError(f"{sdist.name}: {filename} is not an ABI list")
        _write_atomic(dest / filename, data)


def fetch(cache_dir=None) -> Path:
    """Download the pinned sdists (once) and extract the contract artifacts; idempotent.

    Returns the contracts folder. Raises ServiceUnavailable when pip cannot download.
    """
    cache = Path(cache_dir or CACHE_DIR)
    dest = contracts_dir(cache)
    if is_fetched(cache):
        (dest / MARKER).touch()  # keeps make's target newer than this module
        return dest
    sdist_dir = cache / "sdists"
    sdist_dir.mkdir(parents=True, exist_ok=True)
    todo = [req for req in PACKAGES if _sdist_path(sdist_dir, req) is None]
    if todo:
        _download(todo, sdist_dir)
    dest.mkdir(parents=True, exist_ok=True)
    for requirement, (module, names) in PACKAGES.items():
        sdist = _sdist_path(sdist_dir, requirement)
        if sdist is None:
            raise ServiceUnavailable(f"pip did not leave an sdist for {requirement} in {sdist_dir}")
        _extract(sdist, module, names, dest)
    (dest / MARKER).touch()
    load_abi.cache_clear()
    load_bytecode.cache_clear()
    return dest


def _read(name: str, ext: str) -> bytes:
    if name not in CONTRACTS:
        raise ConfigError(f"unknown contract {name!r}: expected one of {', '.join(CONTRACTS)}")
    try:
        return (contracts_dir() / f"{name}{ext}").read_bytes()
    except FileNotFoundError:
        raise ConfigError(MISSING_HINT) from None


@lru_cache(maxsize=None)
def load_abi(name: str) -> list:
    """The ABI (a list of entries) of one contract, e.g. ``load_abi("Registry")``."""
    return json.loads(_read(name, ".json"))


@lru_cache(maxsize=None)
def load_bytecode(name: str) -> bytes:
    """The deployable (creation) bytecode of one contract."""
    return bytes.fromhex(_read(name, ".bin").decode().strip().removeprefix("0x"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cic_seed.artifacts",
                                     description="fetch the CIC contract artifacts from their PyPI sdists")
    parser.add_argument("command", choices=["fetch"])
    parser.add_argument("--cache-dir", metavar="DIR", type=Path, default=None,
                        help=f"cache folder (default {CACHE_DIR})")
    return parser


def main(argv=None) -> int:
    """``fetch``: download and extract the artifacts (no-op when already there)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    fetch(args.cache_dir)
    log.info("contract artifacts in %s", contracts_dir(args.cache_dir))
    return 0


if __name__ == "__main__":
    from .cli import run

    sys.exit(run(main))
