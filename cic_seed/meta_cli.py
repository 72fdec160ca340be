"""The command line shared by cic_meta/import_meta.py and cic_meta/import_meta_phone.py."""
import sys

from .cli import add_meta_arg, base_parser, parse
from .datadir import Datadir
from .errors import IncompleteRun, UsageError
from .meta_import import client_from_settings, problems, upload
from .progress import Progress


def build_parser(description: str):
    parser = base_parser(description)
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


def meta_main(kind: str, name: str, description: str, argv=None) -> int:
    """The whole command line of import_meta.py (``person``) and import_meta_phone.py (``phone``)."""
    args, settings = parse(build_parser(description), argv)
    limit = positive(args.user_count, "N (user count)") if args.user_count is not None else None
    workers = positive(args.workers, "--workers")
    if args.resync and args.follow:
        raise UsageError("--resync checks what is imported already; run it without --follow")
    datadir = Datadir(args.datadir)
    expected = datadir.require_complete().get("user_count")
    with client_from_settings(settings, workers) as client:
        outcome = upload(client, datadir, kind, limit, args.follow, lambda total: Progress(total, name, "user"),
                         args.resync)
    print(f"{name}: {outcome.uploaded} uploaded, {outcome.unchanged} already there"
          + (f", {outcome.skipped} left alone (pointer held another address)" if outcome.skipped else "")
          + f", {len(outcome.failed)} failed; {outcome.timing('user')}; to {client.url}")
    for line in problems(outcome):
        print(f"{name}: {line}", file=sys.stderr)
    if outcome.failed:
        raise IncompleteRun(f"{len(outcome.failed)} users were not uploaded (named above): fix the cause, then run again")
    if limit is None and expected and outcome.total_done < expected:
        print(f"{name}: {expected - outcome.total_done} of {expected} users are not imported yet: run again after "
              "import_users.py, or use --follow")
    return 0
