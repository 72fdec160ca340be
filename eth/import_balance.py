"""Pay the opening balances of the users import_users.py registered (the eth path).

Follows the chain from the block height recorded in the datadir (or --offset / --head),
finds successful top-level add(address) transactions to the AccountsIndex, maps each new
address to its old one through new/ and transfers the balances.csv amount from the wallet
(-y) in the token named by --token-symbol (default: the registry's DefaultToken). Exits 0
once every user in the datadir is paid; --follow keeps it running. Safe to kill and re-run:
nobody is paid twice. May run at the same time as import_users.py with the same wallet.
"""
import sys

from cic_seed.balance_cli import balance_main, build_parser as _build_parser
from cic_seed.cli import run


def build_parser():
    return _build_parser(__doc__.splitlines()[0])


def main(argv=None):
    return balance_main(__doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(run(main))
