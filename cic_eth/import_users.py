"""Register every generated user through the cic-eth custodial engine (the cic_eth path).

Sends cic-eth's create_account(register=True) task chain over celery for each user, many at
once, and learns each new address from cic-eth's redis callback. Users whose callback does not
arrive within --timeout are named at the end (exit 1); a re-run picks up only those.
"""
import sys
import time

from cic_seed.celery_client import api_from_settings
from cic_seed.chainspec import ChainSpec
from cic_seed.cli import add_redis_args, base_parser, parse, run
from cic_seed.custodial import CustodialImporter
from cic_seed.datadir import Datadir
from cic_seed.errors import IncompleteRun, UsageError
from cic_seed.progress import Progress
from cic_seed.redis_callback import listener_from_settings


def build_parser():
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("-i", "--chain-spec", dest="CIC_CHAIN_SPEC", metavar="SPEC", help="chain spec for cic-eth")
    add_redis_args(parser)
    parser.add_argument("--batch-size", type=int, default=100, metavar="N",
                        help="account creations in flight at once (default 100)")
    parser.add_argument("--batch-delay", type=float, default=0.0, metavar="S",
                        help="seconds to pause after each batch is sent (default 0)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="S",
                        help="seconds to wait for each account's callback (default 60)")
    parser.add_argument("datadir", help="data directory made by create_import_users.py")
    return parser


def main(argv=None):
    args, settings = parse(build_parser(), argv)
    if args.batch_size < 1 or args.timeout <= 0:
        raise UsageError("--batch-size must be at least 1 and --timeout above 0")
    chain_spec = ChainSpec.parse(settings.get("CIC_CHAIN_SPEC"))
    datadir = Datadir(args.datadir)
    total = datadir.require_complete().get("user_count")
    datadir.claim_import("cic_eth")
    api = api_from_settings(settings)
    api.check()
    skipped = []
    with listener_from_settings(settings) as listener, datadir.journal("cic_eth_import_users") as journal, \
            Progress(total, "import_users") as progress:
        importer = CustodialImporter(api, listener, datadir, journal, chain_spec, args.batch_size, args.timeout)
        importer.resume()
        if total is not None and len(importer.done) >= total:
            print(f"import_users: all {total} users of {args.datadir} are imported already: nothing to do")
            return 0
        importer.progress = progress
        importer.run(datadir.iter_old(skipped))
        if args.batch_delay:
            time.sleep(args.batch_delay)
    print(f"import_users: {len(importer.done)} of {total} users imported; this run: {progress.summary()}")
    problems = importer.problems(api.queue, f"{listener.host_callback}:{listener.port_callback}")
    problems += [f"skipped {error}" for error in skipped]
    for line in problems:
        print(f"import_users: {line}", file=sys.stderr)
    if problems:
        raise IncompleteRun(f"{len(problems)} users not imported (named above): fix the cause and run again; "
                            "a re-run picks up only those")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
