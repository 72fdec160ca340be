"""The block height a datadir's imports started at (``<datadir>/.block_height``)."""
import os
from pathlib import Path

from .errors import DatadirError

HEIGHT_FILE = ".block_height"


def read_height(datadir) -> int | None:
    path = Path(datadir) / HEIGHT_FILE
    try:
        return int(path.read_text().strip())
    except FileNotFoundError:
        return None
    except ValueError:
        raise DatadirError(f"{path} does not hold a block number: delete it and run scripts/record_height.py") from None


def record_height(datadir, rpc, force=False):
    """Write the current height unless one is recorded; returns (height, newly_recorded)."""
    if not Path(datadir).is_dir():
        raise DatadirError(f"datadir {datadir} does not exist: create users first (scripts/create_import_users.py)")
    existing = read_height(datadir)
    if existing is not None and not force:
        return existing, False
    height = rpc.block_number()
    tmp = Path(datadir) / f".{HEIGHT_FILE}.tmp"
    tmp.write_text(f"{height}\n")
    os.replace(tmp, Path(datadir) / HEIGHT_FILE)
    return height, True
