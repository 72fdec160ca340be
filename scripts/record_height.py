"""Note the chain's block height in the datadir, so import_balance.py knows where to start.

A datadir that already has a height keeps it: a re-run must still see the first run's
registrations.
"""
import sys

from cic_seed.cli import add_chain_args, base_parser, parse, run
from cic_seed.height import record_height
from cic_seed.rpc import RpcClient


def build_parser():
    parser = base_parser(__doc__.splitlines()[0])
    add_chain_args(parser, wallet=False)
    parser.add_argument("--force", action="store_true", help="overwrite a height recorded earlier")
    parser.add_argument("datadir", help="data directory made by create_import_users.py")
    return parser


def main(argv=None):
    args, settings = parse(build_parser(), argv)
    rpc = RpcClient(settings.require("ETH_PROVIDER", "pass -p/--provider"))
    height, recorded = record_height(args.datadir, rpc, args.force)
    print(f"block height {height} {'recorded' if recorded else 'kept (recorded earlier)'} in {args.datadir}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
