"""python -m devnet up|down|status|auto-up [--backend eth|cic_eth|cic_ussd] [-c DIR]"""
import sys
import time

from cic_seed.cli import base_parser, print_config, run, settings_from_args, setup_logging
from cic_seed.config import devnet_state_dir, load_settings

from .network import BACKENDS, Devnet


def build_parser():
    parser = base_parser("Run the local devnet: anvil with the CIC contracts, and the services of a backend.")
    parser.prog = "python -m devnet"
    parser.add_argument("command", choices=["up", "down", "status", "auto-up"],
                        help="up: start (idempotent); down: stop what up started; status: show it; "
                             "auto-up: up only when no CIC_REGISTRY_ADDRESS is configured")
    parser.add_argument("--backend", choices=BACKENDS, default="eth",
                        help="services to run besides the chain (default eth: the chain only)")
    return parser


def _up(devnet, backend) -> None:
    started = time.monotonic()
    results = devnet.up(backend)
    for result in results:
        print(result.line())
    changed = any(r.action not in ("running", "kept") for r in results)
    elapsed = f" in {time.monotonic() - started:.1f} s" if changed else ""
    print(f"devnet {'up' if changed else 'already up'}{elapsed}: state in {devnet.state_dir}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbosity)
    settings = settings_from_args(args)
    if args.print_config:
        print_config(settings)
        return 0
    devnet = Devnet(settings, devnet_state_dir())
    if args.command == "up":
        _up(devnet, args.backend)
    elif args.command == "auto-up":
        configured = load_settings(args.config_dir, use_devnet=False).get("CIC_REGISTRY_ADDRESS")
        if configured:
            print(f"using the configured network: registry {configured} at {settings.get('ETH_PROVIDER')}")
        else:
            _up(devnet, args.backend)
    elif args.command == "down":
        stopped = devnet.down()
        print(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")
    else:
        for status in devnet.status():
            print(status.line())
        registry = devnet.registry_address()
        print(f"registry   {registry or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
