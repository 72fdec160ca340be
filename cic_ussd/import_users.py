"""Register every generated user by dialling cic-ussd from the user's phone (the cic_ussd path).

Each user dials the USSD service (form-encoded as current cic-ussd takes it; --json-body sends the
2021 JSON body) and picks a language, which has cic-ussd create the account through cic-eth;
the new address is then read from the phone pointer cic-ussd writes to cic-meta. Many users
are dialled at once. Users whose pointer does not appear within --timeout are named at the end
(exit 1); a re-run picks up only those and never chooses a language twice for one phone.
"""
import sys

from cic_seed.chainspec import ChainSpec
from cic_seed.cli import add_meta_arg, add_ussd_arg, base_parser, parse, run
from cic_seed.datadir import Datadir
from cic_seed.errors import IncompleteRun, UsageError
from cic_seed.meta_client import MetaClient
from cic_seed.progress import Progress
from cic_seed.ussd_client import client_from_settings
from cic_seed.ussd_import import UssdImporter


def build_parser():
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("-i", "--chain-spec", dest="CIC_CHAIN_SPEC", metavar="SPEC",
                        help="chain spec the new addresses are recorded under")
    add_ussd_arg(parser)
    add_meta_arg(parser)
    parser.add_argument("--batch-size", type=int, default=100, metavar="N",
                        help="users dialled at once (default 100); up to 4 batches wait for their address")
    parser.add_argument("--batch-delay", type=float, default=0.0, metavar="S",
                        help="seconds to pause after each batch is dialled (default 0)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="S",
                        help="seconds to wait for each user's phone pointer (default 60)")
    parser.add_argument("--json-body", action="store_true",
                        help="dial as the 2021 tools did: a JSON body that creates the account at once")
    parser.add_argument("--redial", action="store_true",
                        help="choose a language again for phones the service offers the menu again, "
                             "although an earlier run sent their choice")
    parser.add_argument("datadir", help="data directory made by create_import_users.py")
    return parser


def main(argv=None):
    args, settings = parse(build_parser(), argv)
    if args.batch_size < 1 or args.timeout <= 0 or args.batch_delay < 0:
        raise UsageError("--batch-size must be at least 1, --timeout above 0 and --batch-delay not negative")
    chain_spec = ChainSpec.parse(settings.get("CIC_CHAIN_SPEC"))
    datadir = Datadir(args.datadir)
    total = datadir.require_complete().get("user_count")
    datadir.claim_import("cic_ussd")
    skipped = []
    with client_from_settings(settings, args.json_body) as client, \
            MetaClient(settings.get("META_URL"), workers=16, retries=3) as meta, \
            datadir.journal("cic_ussd_import_users") as journal, Progress(total, "import_users") as progress:
        importer = UssdImporter(client, meta, datadir, journal, chain_spec, args.batch_size, args.timeout,
                                args.batch_delay, args.redial, progress)
        importer.resume()
        if total is not None and len(importer.done) >= total:
            print(f"import_users: all {total} users of {args.datadir} are imported already: nothing to do")
            return 0
        client.check()
        meta.check()
        importer.run(datadir.iter_old(skipped))
    print(f"import_users: {len(importer.done)} users imported; this run: {progress.summary()}")
    problems = importer.problems() + [f"skipped {error}" for error in skipped]
    for line in problems:
        print(f"import_users: {line}", file=sys.stderr)
    if problems:
        missing = total - len(importer.done) if total is not None else len(importer.failures) + len(skipped)
        raise IncompleteRun(f"{missing} users not imported (see above): fix the cause and run again; "
                            "a re-run picks up only those")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
