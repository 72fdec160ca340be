"""Run the project's scripts as a user does: a subprocess with the devnet's environment."""
import subprocess
import sys
from pathlib import Path

from devnet.process import wait_for

ROOT = Path(__file__).resolve().parents[2]


def run_script(script: str, *args, env: dict, timeout: float = 300, check=False) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{script} {' '.join(map(str, args))} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def start_script(script: str, *args, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / script), *map(str, args)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def create_users(datadir, count, env, seed=7, threshold=50):
    run_script("scripts/create_import_users.py", "--dir", datadir, "--seed", seed, "--gift-threshold", threshold,
               count, env=env, check=True)


def wait_for_journal(path: Path, marker: str, count: int, proc=None, timeout: float = 120) -> bool:
    """Wait until the journal ``path`` holds ``count`` occurrences of ``marker`` (or ``proc`` ended)."""
    return wait_for(lambda: (proc is not None and proc.poll() is not None)
                    or (path.exists() and path.read_text().count(marker) >= count), timeout, max_delay=0.05)
