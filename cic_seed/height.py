"""The block height a datadir's imports started at, and the chain it was on (``<datadir>/.block_height``).

The file holds the height on its first line and, on its second, ``genesis <hash of block 0>``:
a datadir belongs to one chain, and its journals say its users are imported. Seeding it again
on another chain (a devnet restarted since, another cluster) would skip them all and fail
verify, so that is refused with a clear error.
"""
from pathlib import Path

from .errors import DatadirError
from .files import atomic_write

HEIGHT_FILE = ".block_height"


def read_height(datadir) -> int | None:
    return _read(datadir)[0]


def _read(datadir):
    """(height, genesis hash or None), or (None, None) when nothing is recorded."""
    path = Path(datadir) / HEIGHT_FILE
    try:
        lines = path.read_text().split("\n")
    except FileNotFoundError:
        return None, None
    try:
        height = int(lines[0].strip())
    except ValueError:
        raise DatadirError(f"{path} does not hold a block number: delete it and run scripts/record_height.py") from None
    genesis = next((line.split()[1] for line in lines[1:] if line.startswith("genesis ")), None)
    return height, genesis


def genesis_hash(rpc) -> str:
    return rpc.call("eth_getBlockByNumber", ["0x0", False])["hash"].lower()


def record_height(datadir, rpc, force=False):
    """Write the current height unless one is recorded; returns (height, newly_recorded).

    A height recorded on another chain is a DatadirError, also with ``force``."""
    if not Path(datadir).is_dir():
        raise DatadirError(f"datadir {datadir} does not exist: create users first (scripts/create_import_users.py)")
    existing, genesis = _read(datadir)
    chain = genesis_hash(rpc)
    if genesis is not None and genesis != chain:
        raise DatadirError(f"{datadir} was seeded on another chain (genesis {genesis[:10]}..., this one "
                           f"{chain[:10]}...; a devnet restarted since?): seed a new datadir (--dir / DATADIR=...) "
                           f"or delete {datadir}")
    if existing is not None and not force:
        return existing, False
    height = rpc.block_number()
    atomic_write(Path(datadir) / HEIGHT_FILE, f"{height}\ngenesis {chain}\n", durable=False)
    return height, True
