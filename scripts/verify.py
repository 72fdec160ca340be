"""Check that every user of a datadir is really in the network: one line per check.

Exit 0 only if every active check passes for every user. Checks: accounts_index, balance
(opening balance + the faucet's tokenAmount), gas, faucet (custodial-style checks), and those
later backends add. --skip-custodial drops the custodial ones.
"""
import json
import sys

from cic_seed.chainspec import ChainSpec
from cic_seed.cli import add_chain_args, add_meta_arg, add_token_arg, add_ussd_arg, base_parser, parse, run
from cic_seed.datadir import Datadir
from cic_seed.registry import connect_from_settings
from cic_seed.verify import CHECKS, Context, iter_users, parse_balance_adjust, run_checks, select_checks


def build_parser():
    parser = base_parser(__doc__.splitlines()[0])
    add_chain_args(parser, wallet=False)
    add_token_arg(parser)
    add_meta_arg(parser)
    add_ussd_arg(parser)
    parser.add_argument("--include", action="append", metavar="CHECK", help=f"only these checks ({', '.join(CHECKS)})")
    parser.add_argument("--exclude", action="append", metavar="CHECK", help="leave these checks out")
    parser.add_argument("--skip-custodial", action="store_true", help="leave out the custodial checks")
    parser.add_argument("--balance-adjust", metavar="N|P%", help="add N smallest units or P percent to the "
                                                                  "expected balance")
    parser.add_argument("--retry-for", type=float, default=0.0, metavar="S",
                        help="re-check failing users for up to S seconds (engines that finish after answering)")
    parser.add_argument("-x", "--exit-on-error", action="store_true", help="stop at the first failing check")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("datadir", help="data directory after the import")
    return parser


def _names(values):
    return [n.strip() for v in values or [] for n in v.split(",") if n.strip()]


def main(argv=None):
    args, settings = parse(build_parser(), argv)
    active = select_checks(_names(args.include), _names(args.exclude), args.skip_custodial)
    datadir = Datadir(args.datadir)
    datadir.require_complete()
    network = connect_from_settings(settings)
    ctx = Context(network, settings, parse_balance_adjust(args.balance_adjust))
    missing = []
    users = iter_users(datadir, network.chain_spec, ChainSpec.parse(settings.get("CHAIN_OLD_SPEC")), missing)
    try:
        results = run_checks(ctx, users, active, stop_on_failure=args.exit_on_error, retry_for=args.retry_for)
    finally:
        ctx.close()
    failed = bool(missing) or any(r.failed for r in results)
    if args.json:
        print(json.dumps({"imported_missing": missing, "checks": [r.__dict__ for r in results],
                          "ok": not failed}, indent=1))
    else:
        print(f"{'imported':16} {'FAIL' if missing else 'ok':4} missing {len(missing)}"
              + (f"  e.g. {missing[0]} has no imported record" if missing else ""))
        for r in results:
            print(r.line())
            for address, reason in r.failures:
                print(f"    {address}: {reason}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run(main))
