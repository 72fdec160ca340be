"""Pay the opening balances of the users import_users.py registered (the eth path).

Follows the chain from the block height recorded in the datadir (or --offset / --head),
finds successful top-level add(address) transactions to the AccountsIndex, maps each new
address to its old one through new/ and transfers the balances.csv amount from the wallet
(-y) in the token named by --token-symbol (default: the registry's DefaultToken). Exits 0
once every user in the datadir is paid; --follow keeps it running. Safe to kill and re-run:
nobody is paid twice. May run at the same time as import_users.py with the same wallet.
"""
import sys

from cic_seed.balances import add_balance_args, run_balances
from cic_seed.cli import (add_chain_args, add_token_arg, base_parser, print_config, run, settings_from_args,
                          setup_logging)
from cic_seed.datadir import Datadir


def build_parser():
    parser = base_parser(__doc__.splitlines()[0])
    add_chain_args(parser)
    add_token_arg(parser)
    add_balance_args(parser)
    parser.add_argument("datadir", help="data directory made by create_import_users.py")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    setup_logging(args.verbosity)
    settings = settings_from_args(args)
    if args.print_config:
        print_config(settings)
        return 0
    print(run_balances(settings, Datadir(args.datadir), args))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
