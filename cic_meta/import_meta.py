"""Upload the person metadata and custom tags of imported users (queued in DATADIR/meta/) to cic-meta.

Each person record goes to sha256(address bytes + ':cic.person'), the user's tags to
':cic.custom', with the server-merge write (POST, then PUT {m, s}), so a plain GET returns the
record. Without N it uploads what is queued and exits; --follow keeps watching while
import_users.py runs, until every user is uploaded. Safe to re-run: what was uploaded with
the same content is not written again.
"""
import sys

from cic_seed.cli import run
from cic_seed.meta_cli import build_parser as _build_parser, meta_main


def build_parser():
    return _build_parser(__doc__.splitlines()[0])


def main(argv=None):
    return meta_main("person", "import_meta", __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(run(main))
