"""Pay the opening balances of the users cic-ussd registered (the cic_ussd path).

The same follower as eth/import_balance.py: successful top-level add(address) transactions to
the AccountsIndex from the recorded block height (cic-ussd's accounts are registered by cic-eth),
mapped to old users through new/, paid from the wallet (-y) in --token-symbol (default
DefaultToken). No user waits for another: everyone with a registration and a new/ record is paid
as soon as both exist. Exits 0 once every user is paid; after --idle-timeout seconds without
progress it exits 1 saying how many are not registered. Safe to kill and re-run; may run while
cic_ussd/import_users.py is still dialling.
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
