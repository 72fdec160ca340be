"""The generator: deterministic, unique phones, sane values, and no global randomness."""
import json
import random
import re
import time

import faker.generator
import pytest
from eth_utils import is_checksum_address

from cic_seed.generate import (AREAS, LOCALES, NAME_KINDS, REFERENCE_EPOCH, generate_users, make_faker, make_person,
                               make_rng, name_lists, reference_time)
from cic_seed.person import GENDERS


def dump(users):
    return [json.dumps([u.person.serialize(), u.balance, u.tags]) for u in users]


def test_same_seed_same_users_and_different_seed_differs():
    first = dump(generate_users(11, 300, gift_threshold=10))
    assert first == dump(generate_users(11, 300, gift_threshold=10))
    assert first != dump(generate_users(12, 300, gift_threshold=10))


def test_seed_zero_is_a_seed():
    assert dump(generate_users(0, 20)) == dump(generate_users(0, 20))
    assert dump(generate_users(0, 20)) != dump(generate_users(1, 20))


def test_phones_are_unique_kenyan_e164():
    phones = [u.person.tel for u in generate_users(5, 5000)]
    assert len(set(phones)) == 5000
    assert all(re.fullmatch(r"\+2547\d{8}", p) for p in phones)


def test_make_person_retries_a_taken_phone():
    now = reference_time(1)
    seen = set()
    first = make_person(make_rng(1), make_faker(1), now, phones_seen=seen)
    assert seen == {int(first.person.tel[5:])}
    again = make_person(make_rng(1), make_faker(1), now, phones_seen=set(seen))  # same draws, phone taken
    assert again.person.tel != first.person.tel
    assert again.person.old_address() != first.person.old_address()  # the retry shifted the stream


def test_values_are_sane():
    now = reference_time(9)
    users = list(generate_users(9, 2000, gift_threshold=25, decimals=6))
    for user in users:
        person = user.person
        data = person.serialize()
        assert isinstance(data["date_registered"], int) and now - 2 * 365 * 86400 < data["date_registered"] <= now
        assert person.gender in GENDERS
        assert is_checksum_address(person.old_address())
        assert list(person.identities) == ["evm"] and list(person.identities["evm"]) == ["oldchain:1"]
        assert person.location["area_name"] in {a[0] for a in AREAS}
        assert ("latitude" in person.location) == ("longitude" in person.location)
        assert 1 <= len(person.products) <= 3
        assert user.balance % 10 ** 6 == 0 and 0 <= user.balance <= 25 * 10 ** 6
        assert user.tags == ("individual",)
        dob = person.date_of_birth
        assert dob == {} or set(dob) in ({"year"}, {"year", "month", "day"})
        assert all(ord(c) < 128 for c in person.email or "")
    # the options really vary across users
    assert len({u.balance for u in users}) == 26
    assert {bool(u.person.date_of_birth) for u in users} == {True, False}
    assert {"latitude" in u.person.location for u in users} == {True, False}
    assert {u.person.email is None for u in users} == {True, False}


def test_threshold_zero_gives_zero_balances_and_tags_pass_through():
    users = list(generate_users(2, 50, tags=("individual", "vendor")))
    assert {u.balance for u in users} == {0}
    assert {u.tags for u in users} == {("individual", "vendor")}


def test_reference_time_comes_from_the_seed_not_the_clock():
    assert reference_time(5) == reference_time(5)
    assert REFERENCE_EPOCH <= reference_time(5) < REFERENCE_EPOCH + 365 * 86400
    assert reference_time(5) < time.time() - 365 * 86400


@pytest.mark.parametrize("locale", LOCALES)
def test_name_lists_draw_exactly_what_faker_draws(locale):
    """The precomputed draw must return Faker's own result for the same seeded generator."""
    ours, theirs = make_faker(3)[locale], make_faker(3)[locale]
    methods = {"first_names_female": theirs.first_name_female, "first_names_male": theirs.first_name_male,
               "first_names": theirs.first_name, "last_names": theirs.last_name}
    order = random.Random(4)
    for _ in range(2000):
        kind = order.choice(NAME_KINDS)
        assert name_lists(locale)[kind].draw(ours.random) == methods[kind]()


def test_the_global_random_and_fakers_shared_random_are_never_touched(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the global random was seeded")

    state = random.getstate()
    shared_state = faker.generator.random.getstate()
    monkeypatch.setattr(random, "seed", forbidden)
    monkeypatch.setattr(faker.generator.random, "seed", forbidden)
    users = list(generate_users(8, 500, gift_threshold=3))
    assert users
    assert random.getstate() == state
    assert faker.generator.random.getstate() == shared_state


def test_make_person_takes_a_faker_or_its_locale_generators():
    now = reference_time(6)
    faker = make_faker(6)
    with_proxy = make_person(make_rng(6), faker, now, phones_seen=set())
    faker = make_faker(6)
    with_dict = make_person(make_rng(6), {loc: faker[loc] for loc in LOCALES}, now, phones_seen=set())
    assert with_proxy == with_dict
