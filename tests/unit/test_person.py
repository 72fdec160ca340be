"""Person records and vCards, byte for byte against cic-types 0.2.2 and vobject."""
import base64
import os
import random
import string

import pytest
from eth_utils import to_checksum_address

from cic_seed import person as person_module
from cic_seed.chainspec import ChainSpec
from cic_seed.generate import generate_users
from cic_seed.person import (OLD_CHAIN, Person, PersonFormatError, checksum_address, normalize_phone,
                             vcard_text, vcard_text_vobject)

# cic-types' own fixture (reference cic-meta.md section 3)
JON_TEXT = ("BEGIN:VCARD\r\nVERSION:3.0\r\nEMAIL:jonsnow@thenorth.com\r\nFN:Jon\\, Snow\r\nN:Snow;Jon;;;\r\n"
            "TEL;TYP=CELL:+254700000000\r\nEND:VCARD\r\n")
JON_B64 = ("QkVHSU46VkNBUkQNClZFUlNJT046My4wDQpFTUFJTDpqb25zbm93QHRoZW5vcnRoLmNvbQ0KRk46Sm9uXCwgU25vdw0KTjpTbm93O0pv"
           "bjs7Ow0KVEVMO1RZUD1DRUxMOisyNTQ3MDAwMDAwMDANCkVORDpWQ0FSRA0K")
BLOXBERG = ChainSpec.parse("evm:bloxberg:8996")


def jon(**kwargs):
    return Person(given="Jon", family="Snow", tel="+254700000000", email="jonsnow@thenorth.com", **kwargs)


def test_jon_snow_vector_byte_for_byte():
    assert vcard_text("Jon", "Snow", "+254700000000", "jonsnow@thenorth.com") == JON_TEXT
    assert vcard_text_vobject("Jon", "Snow", "+254700000000", "jonsnow@thenorth.com") == JON_TEXT
    assert jon().serialize()["vcard"] == JON_B64


def test_serialize_key_order_and_date_of_birth_only_when_set():
    person = jon(gender="male", date_registered=1600000000, location={"area_name": "Kilifi"}, products=["fish"])
    assert list(person.serialize()) == ["date_registered", "gender", "identities", "location", "products", "vcard"]
    person.date_of_birth = {"year": 1990}
    data = person.serialize()
    assert list(data)[-1] == "date_of_birth" and data["date_of_birth"] == {"year": 1990}
    assert isinstance(data["date_registered"], int)


def test_no_email_line_without_email():
    text = base64.b64decode(Person("Amina", "Otieno", "+254711000111").serialize()["vcard"]).decode()
    assert text == ("BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Amina\\, Otieno\r\nN:Otieno;Amina;;;\r\n"
                    "TEL;TYP=CELL:+254711000111\r\nEND:VCARD\r\n")


def test_fast_vcard_equals_vobject_on_random_plain_input(monkeypatch):
    """The hand-written path must be byte-identical to vobject wherever it is taken."""
    fallbacks = []
    monkeypatch.setattr(person_module, "vcard_text_vobject", lambda *a: fallbacks.append(a) or vcard_text_vobject(*a))
    rng = random.Random(1)
    plain = string.ascii_letters + string.digits + " '.-_@+"
    for _ in range(3000):
        given = "".join(rng.choice(plain) for _ in range(rng.randint(1, 45)))
        family = "".join(rng.choice(plain) for _ in range(rng.randint(1, 45)))
        email = "".join(rng.choice(plain) for _ in range(rng.randint(1, 80))) if rng.random() < 0.5 else None
        tel = "+2547" + "".join(rng.choice(string.digits) for _ in range(8))
        assert vcard_text(given, family, tel, email) == vcard_text_vobject(given, family, tel, email)
    assert 1000 < 3000 - len(fallbacks) < 2900  # both paths were exercised


@pytest.mark.parametrize("given,family,email", [
    ("Ëakumbu", "Ng'ang'a", None),          # non-ASCII: vobject path
    ("Jon, Jr", "Snow;North", None),         # characters vobject escapes
    ("Back\\slash", "Line\nbreak", None),
    ("A" * 40, "B" * 40, None),              # long line: vobject folds it
    ("Jon", "Snow", "x" * 70 + "@example.com"),
])
def test_vcard_falls_back_to_vobject_and_round_trips(given, family, email):
    assert vcard_text(given, family, "+254700000001", email) == vcard_text_vobject(given, family, "+254700000001",
                                                                                  email)
    person = Person(given, family, "+254700000001", email=email, identities={})
    back = Person.deserialize(person.serialize())
    assert (back.given, back.family, back.tel, back.email) == (given, family, "+254700000001", email)


def test_generated_people_round_trip_exactly():
    for user in generate_users(3, 300):
        data = user.person.serialize()
        back = Person.deserialize(data)
        assert back == user.person
        assert back.serialize() == data


def test_deserialize_cic_types_fixture_shape():
    data = {"date_registered": 1, "gender": "female", "identities": {"evm": {"byzantium": {"8996:bloxberg": ["ab"]}}},
            "location": {"area_name": "Mukuru"}, "products": ["milk"], "vcard": JON_B64}
    person = Person.deserialize(data)
    assert (person.given, person.family, person.tel, person.email) == ("Jon", "Snow", "+254700000000",
                                                                      "jonsnow@thenorth.com")
    assert person.serialize() == data


@pytest.mark.parametrize("data,message", [
    ({"identities": {}, "vcard": JON_B64}, "date_registered"),
    ({"date_registered": 1, "identities": {}, "vcard": "not base64!"}, "base64"),
    ({"date_registered": 1, "identities": {}, "vcard": base64.b64encode(b"BEGIN:VCARD\r\n").decode()}, "vcard"),
    ([], "object"),
])
def test_deserialize_rejects_bad_records(data, message):
    with pytest.raises(PersonFormatError, match=message):
        Person.deserialize(data)


def test_identities_2021_shape_and_accessors():
    person = jon()
    old = os.urandom(20)
    person.add_identity(OLD_CHAIN, old)
    person.add_identity(BLOXBERG, "0x" + "ab" * 20)
    person.add_identity(BLOXBERG, "AB" * 20)  # the same address again: kept once
    assert person.identities == {"evm": {"oldchain:1": [to_checksum_address(old)],
                                         "bloxberg:8996": [to_checksum_address("0x" + "ab" * 20)]}}
    assert person.old_address() == to_checksum_address(old)
    assert person.address_on(BLOXBERG) == to_checksum_address("0x" + "ab" * 20)
    assert person.address_on(ChainSpec.parse("evm:foo:1")) is None
    with pytest.raises(PersonFormatError, match="oldchain:1"):
        Person("a", "b", "+254700000000").old_address()


def test_checksum_matches_eth_utils():
    for _ in range(2000):
        raw = os.urandom(20)
        assert checksum_address(raw) == to_checksum_address(raw)
        assert checksum_address(raw.hex().upper()) == to_checksum_address(raw)
    with pytest.raises(PersonFormatError):
        checksum_address("0x1234")


def test_phone_normalised_to_e164_for_kenya():
    assert normalize_phone("0712 345678") == "+254712345678"
    assert normalize_phone("+254712345678") == "+254712345678"
    with pytest.raises(PersonFormatError):
        normalize_phone("not a phone")
    tel_line = base64.b64decode(Person("A", "B", "0712345678").serialize()["vcard"]).split(b"\r\n")[4]
    assert tel_line == b"TEL;TYP=CELL:+254712345678"
