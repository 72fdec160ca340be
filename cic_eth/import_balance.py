"""Pay the opening balances of the users cic-eth registered (the cic_eth path).

The same follower as eth/import_balance.py: successful top-level add(address) transactions to
the AccountsIndex from the recorded block height, mapped to old users through new/, paid from
the wallet (-y) in --token-symbol (default DefaultToken). Exits 0 once every user is paid;
safe to kill and re-run; may run while cic_eth/import_users.py is still creating accounts.
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
