"""Configuration: confini ini defaults, then the devnet's override, then -c DIR, env, flags.

Keys are confini constant names: section ``[eth] provider`` is ``ETH_PROVIDER``, and the
environment variable of that name overrides it.
"""
import logging
import os
from pathlib import Path

import confini

from .errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_DIR = PROJECT_ROOT / "config"

logging.getLogger("confini").setLevel(logging.WARNING)


def devnet_state_dir() -> Path:
    """Where the local devnet keeps pidfiles, keys and the config it hands to the scripts."""
    path = Path(os.environ.get("DEVNET_STATE_DIR", ".devnet"))
    return path if path.is_absolute() else PROJECT_ROOT / path


def devnet_config_dir() -> Path:
    return devnet_state_dir() / "config"


class Settings:
    """Read-only view of the effective configuration with typed getters."""

    def __init__(self, store: dict, sources: list):
        self._store = dict(store)
        self.sources = sources

    def get(self, key, default=None):
        value = self._store.get(key)
        if value is None or value == "":
            return default
        return value

    def require(self, key, hint):
        value = self.get(key)
        if value is None:
            raise ConfigError(f"{key} is not set: {hint}")
        return value

    def int(self, key, default=None):
        value = self.get(key)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{key} must be a whole number, got {value!r}") from None

    def bool(self, key):
        value = str(self.get(key, "false")).lower()
        if value not in ("true", "false", "1", "0", "on", "off", "yes", "no"):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value in ("true", "1", "on", "yes")

    def path(self, key, default=None):
        value = self.get(key)
        if value is None:
            return default
        path = Path(value).expanduser()
        return path if path.is_absolute() else PROJECT_ROOT / path

    def list(self, key):
        return [v.strip() for v in self.get(key, "").split(",") if v.strip()]

    def items(self):
        return sorted(self._store.items())


def load_settings(config_dir=None, flags=None, use_devnet=True) -> Settings:
    """Defaults from config/, then the devnet's override (if it runs), then config_dir,
    then environment variables, then non-None ``flags`` (a dict of constant names)."""
    overrides = []
    if use_devnet and devnet_config_dir().is_dir():
        overrides.append(str(devnet_config_dir()))
    if config_dir is not None:
        if not Path(config_dir).is_dir():
            raise ConfigError(f"config directory {config_dir} does not exist: pass an existing folder to -c")
        overrides.append(str(config_dir))
    try:
        cfg = confini.Config(str(DEFAULT_CONFIG_DIR), override_dirs=overrides)
        cfg.process()
    except KeyError as e:
        raise ConfigError(f"unknown config key in {config_dir}: {e.args[0]}") from None
    store = {k: cfg.get(k) for k in cfg.all()}
    for key, value in (flags or {}).items():
        if value is not None:
            store[key] = str(value)
    return Settings(store, [str(DEFAULT_CONFIG_DIR), *overrides])
