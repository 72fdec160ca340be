"""Upload the phone pointers of imported users (queued in DATADIR/phone/meta/) to cic-meta.

Each pointer sha256(E.164 + ':cic.phone') gets the user's new address as a JSON string. Not
needed for users imported through cic_ussd: their pointer exists already, and an existing
pointer is never overwritten (it is read first and left alone). Without N it uploads what is
queued and exits; --follow keeps watching while import_users.py runs. Safe to re-run.
"""
import sys

from cic_seed.cli import run
from cic_seed.meta_cli import build_parser as _build_parser, meta_main


def build_parser():
    return _build_parser(__doc__.splitlines()[0])


def main(argv=None):
    return meta_main("phone", "import_meta_phone", __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(run(main))
