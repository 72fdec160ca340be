"""The checks behind scripts/verify.py: is every imported user really in the network?

Each check takes the verify context and a chunk of users and returns ``{address: reason}``
for the users that fail it. Checks are plain functions in one explicit table; later
backends add theirs to the same table. Users stream through in chunks, so memory stays
flat at 100,000 users.
"""
import logging
import time
from dataclasses import dataclass, field

from . import meta_checks, ussd_client
from .contracts import ACCOUNTS_INDEX, FAUCET, TOKEN, function
from .errors import UsageError
from .registry import faucet_amount
from .rpc import RpcError

log = logging.getLogger(__name__)

CHUNK = 1000
MAX_LISTED = 20  # failures named per check; the count covers all


@dataclass(frozen=True)
class User:
    address: str      # new address, checksum
    old_address: str  # checksum
    tel: str
    person: dict      # the new/ record as written
    tags: tuple
    opening_balance: int
    via_ussd: bool = False  # imported by cic_ussd/import_users.py (its journal has the user done)


@dataclass
class Result:
    name: str
    ok: int = 0
    failed: int = 0
    skipped: bool = False
    failures: list = field(default_factory=list)

    def line(self) -> str:
        if self.skipped:
            return f"{self.name:16} skipped"
        return f"{self.name:16} {'FAIL' if self.failed else 'ok':4} ok {self.ok} failed {self.failed}"

    def add(self, users, failures: dict):
        self.failed += len(failures)
        self.ok += len(users) - len(failures)
        for address, reason in failures.items():
            if len(self.failures) < MAX_LISTED:
                self.failures.append((address, reason))


class Context:
    """What the checks need, built once per run; clients are opened by the checks that use them."""

    def __init__(self, network, settings, balance_adjust=None):
        self.network = network
        self.settings = settings
        self.balance_adjust = balance_adjust
        self._faucet_amount = None
        self.clients = {}

    def close(self):
        """Close the clients the checks opened (the meta client holds connections)."""
        meta = self.clients.pop("meta", None)
        if meta is not None:
            meta.close()

    @property
    def faucet_amount(self) -> int:
        if self._faucet_amount is None:
            self._faucet_amount = faucet_amount(self.network)
        return self._faucet_amount


def _calls(ctx, users, contract, name, to):
    fn = function(contract, name)
    answers = ctx.network.rpc.eth_calls([(to, fn.hexdata(u.address)) for u in users])
    return [fn.decode(a) for a in answers]


def check_accounts_index(ctx, users):
    answers = _calls(ctx, users, ACCOUNTS_INDEX, "have", ctx.network.accounts_index)
    return {u.address: _reason(a, "not in the accounts index") for u, a in zip(users, answers) if a is not True}


def expected_balance(ctx, user) -> int:
    expected = user.opening_balance + ctx.faucet_amount
    adjust = ctx.balance_adjust
    if adjust is None:
        return expected
    if adjust.endswith("%"):
        return expected + expected * int(adjust[:-1]) // 100
    return expected + int(adjust)


def check_balance(ctx, users):
    answers = _calls(ctx, users, TOKEN, "balanceOf", ctx.network.token.address)
    failures = {}
    for user, actual in zip(users, answers):
        expected = expected_balance(ctx, user)
        if isinstance(actual, RpcError) or actual != expected:
            failures[user.address] = f"balance {_reason(actual, actual)} != expected {expected}"
    return failures


def check_gas(ctx, users):
    balances = ctx.network.rpc.balances([u.address for u in users])
    return {u.address: "no gas" for u, wei in zip(users, balances) if wei <= 0}


def check_faucet(ctx, users):
    answers = _calls(ctx, users, FAUCET, "nextTime", ctx.network.faucet)
    return {u.address: _reason(a, "faucet not used") for u, a in zip(users, answers) if isinstance(a, RpcError) or a == 0}


def check_local_key(ctx, users):
    """cic-eth holds the key: AdminApi.have_account echoes the address back."""
    if "cic_eth" not in ctx.clients:
        from .celery_client import api_from_settings
        ctx.clients["cic_eth"] = api_from_settings(ctx.settings)
    answers = ctx.clients["cic_eth"].have_accounts([u.address for u in users], ctx.network.chain_spec)
    return {u.address: "cic-eth does not hold its key" for u, a in zip(users, answers) if a != u.address}


def _reason(answer, default):
    return f"call failed: {answer.message}" if isinstance(answer, RpcError) else str(default)


def parse_balance_adjust(value):
    """``--balance-adjust``: a whole number of smallest units, or a percentage like ``-10%``."""
    if value is None:
        return None
    text = value[:-1] if value.endswith("%") else value
    try:
        int(text)
    except ValueError:
        raise UsageError(f"--balance-adjust takes a whole number or a percentage like 5%, got {value!r}") from None
    return value


# name -> (function, custodial?); custodial checks only hold for accounts cic-eth created
CHECKS = {
    "accounts_index": (check_accounts_index, False),
    "balance": (check_balance, False),
    "gas": (check_gas, True),
    "faucet": (check_faucet, True),
    "local_key": (check_local_key, True),
    **meta_checks.CHECKS,
    "ussd": (ussd_client.check_ussd, True),  # only users imported through USSD; else skipped
}


def select_checks(include, exclude, skip_custodial, available=None):
    table = available or CHECKS
    names = list(include) if include else list(table)
    unknown = [n for n in list(names) + list(exclude or []) if n not in table]
    if unknown:
        raise UsageError(f"unknown check {unknown[0]!r}: choose from {', '.join(table)}")
    active = [n for n in names if n not in (exclude or []) and not (skip_custodial and table[n][1])]
    return active


def run_checks(ctx, users, active, table=None, stop_on_failure=False, retry_for=0.0):
    """Run the active checks over a stream of users; returns one Result per check in the table."""
    table = table or CHECKS
    results = {name: Result(name, skipped=name not in active) for name in table}
    inapplicable = set()  # checks that answered None: they apply to none of a chunk's users
    chunk = []
    for user in users:
        chunk.append(user)
        if len(chunk) >= CHUNK:
            _run_chunk(ctx, chunk, active, results, table, retry_for, inapplicable)
            chunk = []
            if stop_on_failure and any(r.failed for r in results.values()):
                break
    else:
        if chunk:
            _run_chunk(ctx, chunk, active, results, table, retry_for, inapplicable)
    for name in inapplicable:
        results[name].skipped = not (results[name].ok or results[name].failed)
    return list(results.values())


def _run_chunk(ctx, chunk, active, results, table, retry_for, inapplicable):
    """Check a chunk; with ``retry_for`` re-check the failing users (backing off) until they pass or
    the time is up, for engines that finish an account's transactions after answering."""
    for name in active:
        check = table[name][0]
        failures = check(ctx, chunk)
        if failures is None:
            inapplicable.add(name)
            continue
        deadline = time.monotonic() + retry_for
        delay = 0.2
        while failures and time.monotonic() < deadline:
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 5.0)
            retried = check(ctx, [u for u in chunk if u.address in failures]) or {}
            failures = {a: r for a, r in failures.items() if a in retried}
        results[name].add(chunk, failures)


def iter_users(datadir, chain_spec, old_chain, missing: list):
    """Every generated user with its imported record; users with no import yet go to ``missing``."""
    balances = datadir.balances()
    tags = datadir.tags()
    via_ussd = {r[1] for r in datadir.journal("cic_ussd_import_users").records() if r[0] == "done"}
    for old_person in datadir.iter_old():
        old = old_person.old_address(old_chain)
        new = datadir.phone_address(old_person.tel, new=True)
        path = datadir.new_path(new) if new else None
        if path is None or not path.exists():
            missing.append(old)
            continue
        person = datadir.read_person(path)
        address = person.address_on(chain_spec)
        if address is None:
            missing.append(old)
            continue
        yield User(address, old, person.tel, person.serialize(), tags.get(old, ()), balances.get(old, 0),
                   old[2:].upper() in via_ussd)
