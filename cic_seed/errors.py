"""One tree of errors. Scripts turn them into a one-line message and an exit code."""


class SeedError(Exception):
    """A failure the user can act on; the message says what to do."""

    exit_code = 1


class UsageError(SeedError):
    """Bad input: a flag, a config value, a file. Exit status 2."""

    exit_code = 2


class ConfigError(UsageError):
    pass


class DatadirError(UsageError):
    pass


class WalletError(UsageError):
    pass


class ChainError(SeedError):
    pass


class ServiceUnavailable(SeedError):
    pass


class IncompleteRun(SeedError):
    """The run finished but some users could not be processed; a re-run continues."""
