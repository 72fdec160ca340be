"""Flag groups shared by the scripts, and the wrapper that turns errors into exit codes.

A flag whose ``dest`` is an upper-case config key (``ETH_PROVIDER``) overrides that key,
so every such flag provably reaches the settings.
"""
import argparse
import logging
import sys

from .config import load_settings
from .errors import SeedError


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("-c", "--config", dest="config_dir", metavar="DIR",
                        help="config directory overriding the defaults in config/")
    parser.add_argument("-v", dest="verbosity", action="count", default=0,
                        help="more logging (-v info, -vv debug)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the effective configuration (secrets hidden) and exit")
    return parser


def add_chain_args(parser, wallet=True):
    group = parser.add_argument_group("chain")
    group.add_argument("-p", "--provider", dest="ETH_PROVIDER", metavar="URL", help="EVM JSON-RPC endpoint")
    group.add_argument("-i", "--chain-spec", dest="CIC_CHAIN_SPEC", metavar="SPEC",
                       help="chain spec, e.g. evm:bloxberg:8996")
    group.add_argument("-r", "--registry", dest="CIC_REGISTRY_ADDRESS", metavar="ADDRESS",
                       help="CIC contract registry address")
    if wallet:
        group.add_argument("-y", "--key-file", dest="ETH_KEYFILE", metavar="FILE",
                           help="v3 keyfile of the importer wallet (passphrase from ETH_PASSPHRASE "
                                "or --passphrase-file, never the command line)")
        group.add_argument("--passphrase-file", dest="ETH_PASSPHRASE_FILE", metavar="FILE",
                           help="file holding the keyfile passphrase")
    return group


def add_token_arg(parser):
    parser.add_argument("--token-symbol", dest="TOKEN_SYMBOL", metavar="SYMBOL",
                        help="token to use, resolved in the TokenRegistry (default: DefaultToken)")


def add_redis_args(parser):
    group = parser.add_argument_group("celery and redis")
    group.add_argument("-q", "--queue", dest="CELERY_QUEUE", metavar="NAME", help="cic-eth celery queue")
    group.add_argument("--broker-url", dest="CELERY_BROKER_URL", metavar="URL", help="celery broker")
    group.add_argument("--result-url", dest="CELERY_RESULT_URL", metavar="URL", help="celery result backend")
    group.add_argument("--redis-host", dest="REDIS_HOST", metavar="HOST", help="redis to subscribe on")
    group.add_argument("--redis-port", dest="REDIS_PORT", metavar="PORT", type=int)
    group.add_argument("--redis-db", dest="REDIS_DB", metavar="DB", type=int)
    group.add_argument("--redis-host-callback", dest="REDIS_HOST_CALLBACK", metavar="HOST",
                       help="redis host as the cic-eth worker reaches it")
    group.add_argument("--redis-port-callback", dest="REDIS_PORT_CALLBACK", metavar="PORT", type=int)
    return group


def add_meta_arg(parser):
    parser.add_argument("--meta-provider", dest="META_URL", metavar="URL", help="cic-meta server")


def add_ussd_arg(parser):
    parser.add_argument("--ussd-provider", dest="USSD_PROVIDER", metavar="URL", help="cic-ussd server")


def parse(parser, argv=None):
    """Parse the flags, set up logging and load the settings -> (args, settings).

    With ``--print-config`` it prints the effective settings and exits 0, as ``--help`` does."""
    args = parser.parse_args(argv)
    setup_logging(args.verbosity)
    settings = settings_from_args(args)
    if args.print_config:
        print_config(settings)
        parser.exit(0)
    return args, settings


def settings_from_args(args):
    flags = {k: v for k, v in vars(args).items() if k.isupper()}
    return load_settings(args.config_dir, flags)


SECRET_WORDS = ("PASSPHRASE", "PASSWORD", "PASS", "SECRET", "PRIVATE")


def print_config(settings):
    for key, value in settings.items():
        if any(word in key.split("_") for word in SECRET_WORDS) and value:
            value = "***"
        print(f"{key}={value if value is not None else ''}")


def setup_logging(verbosity: int):
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if verbosity < 2:
        for noisy in ("urllib3", "web3", "celery", "kombu", "faker", "asyncio"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def run(main, argv=None) -> int:
    """Call ``main(argv)`` and map the error tree to one stderr line and an exit code."""
    parts = sys.argv[0].rsplit("/", 2)[-2:]
    name = parts[0] if parts[-1] == "__main__.py" else "/".join(parts)  # python -m devnet -> devnet
    try:
        return main(argv) or 0
    except SeedError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return e.exit_code
    except SystemExit as e:  # --help, --print-config and argparse's usage errors (status 2)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:
        print(f"{name}: interrupted; run it again to continue", file=sys.stderr)
        return 130
