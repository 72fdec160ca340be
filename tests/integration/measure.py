"""Run a script as a user does and measure it: wall time and the child's own peak RSS."""
import os
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


def measure(name: str, count: int, script: str, *args, env: dict) -> Measured:
    """Run ``script`` to completion (it must exit 0); os.wait4 gives this child's own rusage."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(ROOT / script), *map(str, args)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = b"", b""
    # read the pipes before reaping, so a chatty child cannot block on a full pipe
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{out.decode()}\n{err.decode()}"
    return Measured(name, seconds, usage.ru_maxrss / 1024, count)
