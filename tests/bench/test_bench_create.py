"""Benchmark: scripts/create_import_users.py writing 100,000 users into a tmp dir.

Run with ``make bench-create`` or ``pytest -m bench tests/bench/test_bench_create.py -s``.
The script runs as a child process; its peak RSS comes from ``wait4``'s rusage of that child
alone, and its CPU split (user/sys) shows how much of the time is the filesystem's.
``BENCH_CREATE_N`` changes the count, ``BENCH_CREATE_DIR`` the parent folder (e.g. /dev/shm
to take the disk out of the measurement).
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.bench, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
N = int(os.environ.get("BENCH_CREATE_N", "100000"))
TARGET_RATE = 3000  # users/s
TARGET_RSS_MB = 200


def peak_rss_kb(pid) -> int:
    """VmHWM of a running process: the peak RSS of its current program only."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def run_child(args):
    """Run a command; return (exit code, stdout, stderr, seconds, peak RSS in kB, rusage).

    The peak RSS is polled from /proc, not taken from rusage: ``ru_maxrss`` of a child also
    counts the parent's (pytest's) memory image it had before ``exec``.
    """
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(args, stdout=out, stderr=err, text=True)
        peak = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, peak_rss_kb(proc.pid))
            time.sleep(0.05)
        seconds = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return proc.returncode, out.read(), err.read(), seconds, peak, usage


def test_create_100k_users():
    parent = os.environ.get("BENCH_CREATE_DIR") or None
    with tempfile.TemporaryDirectory(prefix="bench-create-", dir=parent) as tmp:
        datadir = Path(tmp) / "out"
        code, out, err, seconds, peak_kb, usage = run_child(
            [sys.executable, str(ROOT / "scripts" / "create_import_users.py"), "--dir", str(datadir),
             "--seed", "1", "--gift-threshold", "100", str(N)])
        assert code == 0, err
        rows = sum(1 for _ in open(datadir / "balances.csv"))
        records = sum(len(files) for _, _, files in os.walk(datadir / "old"))
    rate = N / seconds
    rss_mb = peak_kb / 1024
    print(f"\ncreate_import_users.py {N} users into {parent or tempfile.gettempdir()}: {seconds:.1f} s, "
          f"{rate:.0f} users/s (target >= {TARGET_RATE}); peak RSS {rss_mb:.0f} MB (target <= {TARGET_RSS_MB}); "
          f"CPU user {usage.ru_utime:.1f} s, sys {usage.ru_stime:.1f} s; load average {os.getloadavg()[0]:.1f}")
    print(out.strip())
    assert rows == records == N
    assert rss_mb <= TARGET_RSS_MB
    assert rate >= TARGET_RATE, (f"{rate:.0f} users/s: below the target; user {usage.ru_utime:.1f} s is the "
                                 f"generator, sys {usage.ru_stime:.1f} s mostly the filesystem")
