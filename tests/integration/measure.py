"""Run a script as a user does and measure it: wall time and the child's own peak RSS."""
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Measured:
    name: str
    seconds: float
    peak_rss_mb: float
    count: int

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (f"{self.name:18} {self.count:>7} in {self.seconds:7.2f} s = {self.rate:8.0f}/s   "
                f"peak RSS {self.peak_rss_mb:6.0f} MB")


# A small launcher runs the script and reports its child's peak RSS: a child forked from pytest
# itself would count pytest's own pages, copied at fork time, in its ru_maxrss.
LAUNCHER = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


def measure(name: str, count: int, script: str, *args, env: dict) -> Measured:
    """Run ``script`` to completion (it must exit 0); returns its wall time and peak RSS."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", LAUNCHER, sys.executable, str(ROOT / script), *map(str, args)],
                            env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.monotonic() - started
    assert result.returncode == 0, f"{script} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    peak_kb = int(result.stderr.strip().splitlines()[-1])
    return Measured(name, seconds, peak_kb / 1024, count)


def measure_seed(backend: str, count: int, datadir, env: dict, verify_args=(), phone_pointers=True, seed=1):
    """The steps of ``make seed`` for ``backend``, one by one, each measured; returns (steps, seconds).
    Benches sharing the session devnet need other ``seed``s: equal users would share phone pointers."""
    started = time.monotonic()
    steps = [
        measure("create", count, "scripts/create_import_users.py", "--dir", datadir, "--seed", seed,
                "--gift-threshold", 100, count, env=env),
        measure("record_height", 1, "scripts/record_height.py", datadir, env=env),
        measure("import_users", count, f"{backend}/import_users.py", datadir, env=env),
        measure("import_balance", count, f"{backend}/import_balance.py", datadir, env=env),
        measure("import_meta", count, "cic_meta/import_meta.py", datadir, env=env),
    ]
    if phone_pointers:
        steps.append(measure("import_meta_phone", count, "cic_meta/import_meta_phone.py", datadir, env=env))
    steps.append(measure("verify", count, "scripts/verify.py", *verify_args, datadir, env=env))
    return steps, time.monotonic() - started


def print_seed(title: str, steps: list, count: int, seconds: float):
    print(f"\n== {title} ==")
    for step in steps:
        print(step.line())
    print(f"{'end to end':18} {count:>7} in {seconds:7.2f} s = {count / seconds:8.0f}/s")
