"""The command line every backend's import_balance.py shares (the balances are paid the same way)."""
from .balances import add_balance_args, run_balances
from .cli import add_chain_args, add_token_arg, base_parser, parse
from .datadir import Datadir


def build_parser(description: str):
    parser = base_parser(description)
    add_chain_args(parser)
    add_token_arg(parser)
    add_balance_args(parser)
    parser.add_argument("datadir", help="data directory made by create_import_users.py")
    return parser


def balance_main(description: str, argv=None) -> int:
    args, settings = parse(build_parser(description), argv)
    print(run_balances(settings, Datadir(args.datadir), args))
    return 0
