"""Register every generated user with a sovereign wallet of their own (the eth path).

Each user gets a new key (v3 keyfile in DATADIR/keystore), is added to the AccountsIndex by
the importer wallet (-y), receives a little gas and calls the faucet itself. Safe to re-run
and to kill: a re-run continues with the same keys and sends nothing twice.
"""
import sys
import time

from cic_seed.cli import add_chain_args, base_parser, parse, run
from cic_seed.datadir import Datadir
from cic_seed.errors import IncompleteRun, UsageError
from cic_seed.progress import Progress
from cic_seed.registry import connect_from_settings
from cic_seed.signer import load_wallet
from cic_seed.sovereign import SovereignImporter
from cic_seed.transactions import TX_GAS, gas_price
from cic_seed.wallet_checks import require_gas, require_writer


def build_parser():
    parser = base_parser(__doc__.splitlines()[0])
    add_chain_args(parser)
    parser.add_argument("--batch-size", type=int, default=250, metavar="N",
                        help="users per batch (default 250: two wallet transactions each)")
    parser.add_argument("--batch-delay", type=float, default=0.0, metavar="S",
                        help="seconds to pause between batches (default 0: no pause)")
    parser.add_argument("--kdf-iterations", dest="KEYSTORE_KDF_ITERATIONS", type=int, metavar="N",
                        help="pbkdf2 iterations of the users' keyfiles (KEYSTORE_KDF_ITERATIONS)")
    parser.add_argument("datadir", help="data directory made by create_import_users.py")
    return parser


def chunks(iterable, size):
    chunk = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def paced(batches, delay):
    """The batches, with ``delay`` seconds between them (none by default)."""
    for i, batch in enumerate(batches):
        if i and delay:
            time.sleep(delay)
        yield batch


def main(argv=None):
    args, settings = parse(build_parser(), argv)
    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    datadir = Datadir(args.datadir)
    total = datadir.require_complete().get("user_count")
    datadir.claim_import("eth")
    network = connect_from_settings(settings)
    wallet = load_wallet(settings)
    require_writer(network, wallet)
    price = gas_price(network.rpc, settings.int("CHAIN_GAS_PRICE"))
    importer = SovereignImporter(network, wallet, datadir, datadir.journal("eth_import_users"), price,
                                 settings.int("CHAIN_GAS_GIFT", 0), settings.get("KEYSTORE_PASSWORD", ""),
                                 settings.int("KEYSTORE_KDF_ITERATIONS", 16))
    skipped = []
    with importer.journal, Progress(total, "import_users") as progress:
        importer.resume()
        remaining = (total or 0) - len(importer.done)
        require_gas(network, wallet, remaining * (importer.gas_gift + 2 * TX_GAS * price), f"{remaining} users")
        importer.progress = progress
        importer.run(paced(chunks(datadir.iter_old(skipped), args.batch_size), args.batch_delay))
    print(f"import_users: {len(importer.done)} of {total} users registered; this run: {progress.summary()}")
    if skipped:
        for error in skipped:
            print(f"import_users: skipped {error}", file=sys.stderr)
        raise IncompleteRun(f"{len(skipped)} corrupt user records skipped (named above): fix or regenerate them, "
                            "then run again")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
