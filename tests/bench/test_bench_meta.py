"""Benchmark: 10,000 person documents into the devnet meta server (POST + PUT each).

Run with ``make bench BACKEND=meta`` or ``pytest -m bench tests/bench/test_bench_meta.py -s``.
Prints documents/s for the bare client and for cic_meta/import_meta.py end to end (person +
custom tags per user, queue reading and journalling included), and the CPU seconds of client
and server per document.
"""
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from cic_seed.chainspec import ChainSpec
from cic_seed.datadir import Datadir
from cic_seed.meta_client import MetaClient
from cic_seed.person import Person
from cic_seed.pointers import person_pointer
from devnet import meta_server

pytestmark = [pytest.mark.bench, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
N = int(os.environ.get("BENCH_META_N", "10000"))
TARGET = 500  # person documents per second (issue 5)
CHAIN = ChainSpec.parse("evm:bloxberg:8996")


def server_cpu(pid) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@pytest.fixture
def server(tmp_path):
    process, url = meta_server.spawn(tmp_path / "meta.sqlite")
    try:
        yield process, url
    finally:
        process.terminate()
        process.wait(10)


def sample_person(i) -> dict:
    person = Person(given=f"Given{i}", family="Family", tel=f"+2547{i:08d}", gender="female",
                    date_registered=1650000000 + i, location={"area_name": "Kilifi", "latitude": -3.6},
                    products=["maize", "fish"], date_of_birth={"year": 1990})
    person.add_identity(ChainSpec.parse("evm:oldchain:1"), hashlib.sha256(b"old%d" % i).digest()[:20])
    person.add_identity(CHAIN, hashlib.sha256(b"new%d" % i).digest()[:20])
    return person.serialize()


def test_bench_client_put(server):
    process, url = server
    docs = [(person_pointer(hashlib.sha256(b"new%d" % i).digest()[:20]), sample_person(i)) for i in range(N)]
    cpu0, scpu0 = own_cpu(), server_cpu(process.pid)
    started = time.monotonic()
    with MetaClient(url) as client:
        for _, _, error in client.run_many(lambda doc: client.put(*doc), docs):
            assert error is None
    elapsed = time.monotonic() - started
    rate = N / elapsed
    print(f"\nmeta client: {N} person docs (POST+PUT) in {elapsed:.1f} s = {rate:.0f} docs/s "
          f"(target {TARGET}); CPU per doc: client {(own_cpu() - cpu0) / N * 1e3:.2f} ms, "
          f"server {(server_cpu(process.pid) - scpu0) / N * 1e3:.2f} ms; load {os.getloadavg()[0]:.1f}")
    ptr, doc = docs[-1]
    assert requests.get(f"{url}/{ptr}").json() == doc
    assert rate > TARGET / 5, "far below the target: something is badly wrong"


def test_bench_import_meta(server, tmp_path):
    process, url = server
    path = tmp_path / "data"
    subprocess.run([sys.executable, str(ROOT / "scripts/create_import_users.py"), "--dir", str(path),
                    "--seed", "1", str(N)], check=True, capture_output=True)
    datadir = Datadir(path)
    for person in datadir.iter_old():
        address = hashlib.sha256(person.old_address().encode()).digest()[:20]
        person.add_identity(CHAIN, address)
        datadir.write_new(person, address)
    scpu0 = server_cpu(process.pid)
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(ROOT / "cic_meta/import_meta.py"), "--meta-provider", url, str(path)],
                            capture_output=True, text=True)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert f"{N} uploaded" in result.stdout
    print(f"\nimport_meta: {N} users = {2 * N} docs (person + custom) in {elapsed:.1f} s = {N / elapsed:.0f} users/s, "
          f"{2 * N / elapsed:.0f} docs/s; server CPU per doc {(server_cpu(process.pid) - scpu0) / (2 * N) * 1e3:.2f} ms; "
          f"load {os.getloadavg()[0]:.1f}\n  {result.stdout.strip()}")
    started = time.monotonic()
    again = subprocess.run([sys.executable, str(ROOT / "cic_meta/import_meta.py"), "--meta-provider", url, str(path)],
                           capture_output=True, text=True)
    assert again.returncode == 0 and "0 uploaded" in again.stdout
    print(f"  re-run (nothing to do): {time.monotonic() - started:.1f} s")
    sample = json.loads(next(iter(sorted((path / "new").rglob("*.json")))).read_bytes())
    assert sample["identities"]
