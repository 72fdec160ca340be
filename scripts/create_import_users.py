"""Generate fake users into a data directory (step 1; needs no services).

The same --seed and arguments give a byte-identical datadir. Files appear only when the whole
generation is written: a killed run leaves the datadir as it was (plus a .partial folder that the
next run removes). --force replaces the generated files and drops the import results made from
the previous generation (new/, meta/, phone/new, phone/meta, txs/, journal/); it keeps keystore/
and files it does not know. --reset empties the datadir first.
"""
import re
import secrets
import sys

from cic_seed.chainspec import ChainSpec
from cic_seed.cli import base_parser, parse, run
from cic_seed.datadir import Datadir
from cic_seed.errors import UsageError
from cic_seed.generate import DEFAULT_TAGS, generate_users
from cic_seed.progress import Progress

FORMAT = 1  # bump when the generated data changes for the same arguments
TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def build_parser():
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--dir", default="out", metavar="DATADIR", help="data directory (default: out)")
    parser.add_argument("--seed", metavar="S", help="random seed, a whole number (default: a random one, printed)")
    parser.add_argument("--gift-threshold", default="0", metavar="N",
                        help="opening balance: 0..N whole tokens per user, at random (default: 0)")
    parser.add_argument("--gift-decimals", dest="TOKEN_DECIMALS", metavar="D",
                        help="token decimals of the balances (default: TOKEN_DECIMALS, 6)")
    parser.add_argument("--tag", action="append", metavar="T",
                        help="custom metadata tag of every user; repeat for more (default: individual)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--force", action="store_true",
                      help="replace the data in a non-empty datadir (keeps keystore/ and unknown files)")
    mode.add_argument("--reset", action="store_true", help="empty the datadir first")
    parser.add_argument("--keep-existing", action="store_true",
                        help="exit 0 if the datadir already holds a complete generation of these arguments")
    parser.add_argument("user_count", help="number of users to generate")
    return parser


def whole(value, what: str, minimum: int = 0, maximum: int | None = None) -> int:
    """``value`` as an int within bounds, or UsageError naming ``what``."""
    try:
        number = int(str(value).strip().replace("_", ""))
    except ValueError:
        number = None
    if number is None or number < minimum or (maximum is not None and number > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise UsageError(f"{what} must be a whole number {bound}, got {value!r}")
    return number


def parse_tags(values) -> tuple:
    """The --tag values, deduplicated in order; UsageError on a tag that is not plain ASCII."""
    tags = tuple(dict.fromkeys(values or DEFAULT_TAGS))
    for tag in tags:
        if not TAG.match(tag):
            raise UsageError(f"--tag {tag!r}: use letters, digits, '_', '.' or '-' (no spaces or commas)")
    return tags


def same_generation(marker, arguments: dict, seed_given: bool) -> bool:
    """Whether a datadir's marker matches these arguments (any seed if none was given)."""
    if not marker:
        return False
    keys = [k for k in arguments if k != "seed" or seed_given]
    return all(marker.get(k) == arguments[k] for k in keys)


def main(argv=None) -> int:
    args, settings = parse(build_parser(), argv)
    count = whole(args.user_count, "user_count", minimum=1)
    arguments = {
        "format": FORMAT,
        "user_count": count,
        "seed": whole(args.seed, "--seed") if args.seed is not None else None,
        "gift_threshold": whole(args.gift_threshold, "--gift-threshold"),
        "gift_decimals": whole(settings.get("TOKEN_DECIMALS", 6), "--gift-decimals (TOKEN_DECIMALS)", maximum=77),
        "tags": list(parse_tags(args.tag)),
        "old_chain": str(ChainSpec.parse(settings.get("CHAIN_OLD_SPEC", "evm:oldchain:1"))),
    }
    datadir = Datadir(args.dir)
    if args.keep_existing:
        marker = datadir.marker()
        if same_generation(marker, arguments, args.seed is not None):
            print(f"{args.dir} already holds the {count} users of seed {marker['seed']} made with these "
                  "arguments: kept (--keep-existing)")
            return 0
    datadir.check(args.force, args.reset)
    if arguments["seed"] is None:
        arguments["seed"] = secrets.randbelow(2 ** 32)
        print(f"seed {arguments['seed']} (pass --seed {arguments['seed']} to repeat this run)", file=sys.stderr)
    users = generate_users(arguments["seed"], count, old_chain=ChainSpec.parse(arguments["old_chain"]),
                           tags=tuple(arguments["tags"]), gift_threshold=arguments["gift_threshold"],
                           decimals=arguments["gift_decimals"])
    with Progress(count, "create") as progress, datadir.create(args.force, args.reset) as generation:
        for user in users:
            generation.add(user)
            progress.update()
        generation.commit(arguments)
    print(f"created {count} users in {args.dir} (seed {arguments['seed']}): "
          f"{progress.elapsed:.1f} s, {progress.rate:.0f} users/s")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
