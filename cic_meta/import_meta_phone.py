"""Upload the phone pointers of imported users (queued in DATADIR/phone/meta/) to cic-meta.

Each pointer sha256(E.164 + ':cic.phone') gets the user's new address as a JSON string. Not
needed for users imported through cic_ussd: their pointer exists already, and an existing
pointer is never overwritten (it is read first and left alone). Without N it uploads what is
queued and exits; --follow keeps watching while import_users.py runs. Safe to re-run.
"""
import sys

from cic_seed.cli import add_meta_arg, base_parser, print_config, run, settings_from_args, setup_logging
from cic_seed.datadir import Datadir
from cic_seed.errors import IncompleteRun, UsageError
from cic_seed.meta_import import client_from_settings, problems, upload
from cic_seed.progress import Progress

KIND = "phone"
NAME = "import_meta_phone"
UNIT = "user"


def build_parser():
    parser = base_parser(__doc__.splitlines()[0])
    add_meta_arg(parser)
    parser.add_argument("--follow", action="store_true",
                        help="keep watching the queue while import_users.py runs, until every user is uploaded")
    parser.add_argument("--resync", action="store_true",
                        help="compare every imported user with cic-meta (GET) and upload what differs, "
                             "e.g. after the server lost its data")
    parser.add_argument("--workers", type=int, default=4, metavar="N",
                        help="requests in flight (default 4, the sweet spot on a 2-core machine)")
    parser.add_argument("datadir", help="data directory made by create_import_users.py")
    parser.add_argument("user_count", nargs="?", metavar="N", help="stop after N users")
    return parser


def positive(value, name):
    """``value`` as a whole number >= 1, else UsageError naming ``name``."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise UsageError(f"{name} must be a whole number of at least 1, got {value!r}")
    return number


def main(argv=None):
    args = build_parser().parse_args(argv)
    setup_logging(args.verbosity)
    settings = settings_from_args(args)
    if args.print_config:
        print_config(settings)
        return 0
    limit = positive(args.user_count, "N (user count)") if args.user_count is not None else None
    workers = positive(args.workers, "--workers")
    if args.resync and args.follow:
        raise UsageError("--resync checks what is imported already; run it without --follow")
    datadir = Datadir(args.datadir)
    expected = datadir.require_complete().get("user_count")
    with client_from_settings(settings, workers) as client:
        outcome = upload(client, datadir, KIND, limit, args.follow, lambda total: Progress(total, NAME, UNIT),
                         args.resync)
    print(f"{NAME}: {outcome.uploaded} uploaded, {outcome.unchanged} already there"
          + (f", {outcome.skipped} left alone (pointer held another address)" if outcome.skipped else "")
          + f", {len(outcome.failed)} failed; {outcome.timing(UNIT)}; to {client.url}")
    for line in problems(outcome):
        print(f"{NAME}: {line}", file=sys.stderr)
    if outcome.failed:
        raise IncompleteRun(f"{len(outcome.failed)} users were not uploaded (named above): fix the cause, then run again")
    if limit is None and expected and outcome.total_done < expected:
        print(f"{NAME}: {expected - outcome.total_done} of {expected} users are not imported yet: run again after "
              "import_users.py, or use --follow")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
