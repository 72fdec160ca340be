"""Deterministic fake users: the same seed and count give the same users, byte for byte.

All randomness comes from two injected sources: a ``random.Random`` for every choice we make
(locale, gender, phone, address, dates, place, products, balance) and a Faker seeded with
``seed_instance`` for names and e-mail domains. Nothing reads the clock, the global ``random``
or ``os.urandom``; "now" is a reference time derived from the seed.

Locales are chosen on purpose: the phone numbers are Kenyan (+254 7xx xxx xxx), so names come
from Faker's ``en_KE`` and ``sw`` (Swahili) person providers, and places from a list of areas
where Grassroots Economics communities trade.
"""
import functools
import itertools
import random
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterator

from faker import Faker
from faker.providers.person.en_KE import Provider as EnKePersonProvider
from faker.providers.person.sw import Provider as SwPersonProvider

from .chainspec import ChainSpec
from .person import GENDERS, OLD_CHAIN, Person

REFERENCE_EPOCH = 1609459200  # 2021-01-01T00:00:00Z: the reference times fall in 2021
LOCALES = ("en_KE", "sw")
PERSON_PROVIDERS = {"en_KE": EnKePersonProvider, "sw": SwPersonProvider}
NAME_KINDS = ("first_names_female", "first_names_male", "first_names", "last_names")
DEFAULT_TAGS = ("individual",)
PHONE_PREFIX = "+2547"  # +254 and 9 digits: Kenyan mobile numbers 7xx xxx xxx
GENDER_CUM_WEIGHTS = (48, 96, 100)
REGISTERED_WITHIN = 2 * 365 * 86400
# (area_name, area_type, latitude, longitude)
AREAS = (
    ("Kilifi", "rural", -3.6305, 39.8499), ("Mombasa", "urban", -4.0435, 39.6682),
    ("Kwale", "rural", -4.1737, 39.4521), ("Kinango", "rural", -4.1383, 39.3173),
    ("Miritini", "urban", -3.9943, 39.5885), ("Bangladesh", "urban", -4.0041, 39.6063),
    ("Kisauni", "urban", -4.0138, 39.7031), ("Mtwapa", "urban", -3.9429, 39.7464),
    ("Ganze", "rural", -3.5319, 39.6882), ("Mukuru", "urban", -1.3113, 36.8797),
    ("Kibera", "urban", -1.3133, 36.7878), ("Kangemi", "urban", -1.2675, 36.7473),
    ("Mathare", "urban", -1.2597, 36.8605), ("Gatina", "urban", -1.2823, 36.7593),
    ("Nyalenda", "urban", -0.1123, 34.7685), ("Lodwar", "rural", 3.1191, 35.5973),
)
PRODUCTS = (
    "maize", "beans", "fish", "vegetables", "fruits", "milk", "eggs", "charcoal", "firewood", "water",
    "mandazi", "chapati", "tailoring", "shoe repair", "barber", "boda boda", "farm labour", "cleaning",
    "tuition", "phone repair", "soap", "kiosk", "poultry", "mitumba",
)
_NOT_EMAIL = re.compile(r"[^a-z0-9]")


@dataclass(frozen=True)
class GeneratedUser:
    """One generated user: the Person record plus what goes beside it in the data directory."""

    person: Person
    balance: int
    tags: tuple


class NameList:
    """One of Faker's name lists, drawn from exactly as Faker draws from it, but faster.

    Faker's ``random_element`` on a weighted list (en_KE has ~1,000 weighted surnames) calls
    ``random.choices(names, weights=...)``, which rebuilds the cumulative weights on every call
    (~0.15 ms). Passing them precomputed as ``cum_weights`` consumes the same random numbers and
    returns the same name; ``tests/unit/test_generate.py`` checks it against Faker's own methods.
    """

    def __init__(self, elements):
        self.names = tuple(elements)
        self.cum_weights = list(itertools.accumulate(elements.values())) if isinstance(elements, OrderedDict) else None

    def draw(self, rnd: random.Random) -> str:
        """One name, using the Faker generator's own seeded ``rnd``."""
        if self.cum_weights is None:
            return rnd.choice(self.names)
        return rnd.choices(self.names, cum_weights=self.cum_weights)[0]


@functools.cache
def name_lists(locale: str) -> dict:
    """The ``NAME_KINDS`` lists of a locale's Faker person provider (static data, built once)."""
    provider = PERSON_PROVIDERS[locale]
    return {
        "first_names_female": NameList(provider.first_names_female),
        "first_names_male": NameList(provider.first_names_male),
        "first_names": NameList(provider.first_names),
        "last_names": NameList(provider.last_names),
    }


def reference_time(seed) -> int:
    """The fixed "now" of a run: a moment in 2021 derived from the seed, never the clock."""
    return REFERENCE_EPOCH + random.Random(f"{seed}:now").randrange(365 * 86400)


def make_rng(seed) -> random.Random:
    """The run's own random source (never the global ``random``)."""
    return random.Random(f"{seed}:people")


def make_faker(seed) -> Faker:
    """A Faker for ``LOCALES`` seeded with ``seed_instance`` (never ``Faker.seed``)."""
    fake = Faker(list(LOCALES))
    fake.seed_instance(f"{seed}:faker")
    return fake


def _unique_phone(rng: random.Random, phones_seen: set) -> str:
    while True:
        number = rng.randrange(10 ** 8)
        if number not in phones_seen:
            phones_seen.add(number)
            return f"{PHONE_PREFIX}{number:08d}"


def _date_of_birth(rng: random.Random, now: int) -> dict:
    if rng.random() < 0.5:
        return {}
    year = time.gmtime(now).tm_year - rng.randint(16, 80)
    if rng.random() < 0.5:
        return {"year": year}
    return {"year": year, "month": rng.randint(1, 12), "day": rng.randint(1, 28)}


def _location(rng: random.Random) -> dict:
    name, kind, lat, lon = rng.choice(AREAS)
    location = {"area_name": name, "area_type": kind}
    if rng.random() < 0.5:
        location["latitude"] = round(lat + rng.uniform(-0.02, 0.02), 6)
        location["longitude"] = round(lon + rng.uniform(-0.02, 0.02), 6)
    return location


def make_person(rng: random.Random, fake, now: int, *, phones_seen: set,
                old_chain: ChainSpec = OLD_CHAIN, tags: tuple = DEFAULT_TAGS,
                gift_threshold: int = 0, decimals: int = 6) -> GeneratedUser:
    """One user drawn from ``rng`` and ``fake`` only; ``phones_seen`` (ints) keeps phones unique.

    ``fake`` is a Faker from ``make_faker`` or, faster, a dict of its per-locale generators
    (``fake[locale]`` is all that is used).

    The opening balance is 0..gift_threshold whole tokens, in the smallest unit (x 10**decimals).
    """
    locale = rng.choice(LOCALES)
    names = fake[locale]
    names_rng = names.random
    lists = name_lists(locale)
    gender = rng.choices(GENDERS, cum_weights=GENDER_CUM_WEIGHTS)[0]
    first_kind = {"female": "first_names_female", "male": "first_names_male"}.get(gender, "first_names")
    given = lists[first_kind].draw(names_rng)
    family = lists["last_names"].draw(names_rng)
    tel = _unique_phone(rng, phones_seen)
    email = None
    if rng.random() < 0.25:
        local = f"{_NOT_EMAIL.sub('', given.lower())}.{_NOT_EMAIL.sub('', family.lower())}{rng.randrange(100)}"
        email = f"{local}@{names.free_email_domain()}"
    person = Person(
        given=given, family=family, tel=tel, gender=gender, email=email,
        date_registered=now - rng.randrange(REGISTERED_WITHIN),
        date_of_birth=_date_of_birth(rng, now),
        location=_location(rng),
        products=rng.sample(PRODUCTS, rng.randint(1, 3)),
    )
    person.add_identity(old_chain, rng.randbytes(20))
    balance = rng.randint(0, gift_threshold) * 10 ** decimals
    return GeneratedUser(person=person, balance=balance, tags=tuple(tags))


def generate_users(seed, count: int, *, old_chain: ChainSpec = OLD_CHAIN, tags: tuple = DEFAULT_TAGS,
                   gift_threshold: int = 0, decimals: int = 6) -> Iterator[GeneratedUser]:
    """``count`` users for ``seed``, one at a time (memory: only the set of phones used)."""
    rng = make_rng(seed)
    faker = make_faker(seed)
    fake = {locale: faker[locale] for locale in LOCALES}  # skips the proxy's lookup per user
    now = reference_time(seed)
    phones_seen = set()
    for _ in range(count):
        yield make_person(rng, fake, now, phones_seen=phones_seen, old_chain=old_chain, tags=tags,
                          gift_threshold=gift_threshold, decimals=decimals)
