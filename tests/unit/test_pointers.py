"""cic-meta pointers against the test vectors of cic-meta's tests/meta.ts."""
import pytest

from cic_seed.errors import UsageError
from cic_seed.pointers import (custom_name_pointer, custom_pointer, person_pointer, phone_pointer, pointer,
                               preferences_pointer)

ADDRESS = "0xc1912fee45d61c87cc5ea59dae31190fffff232d"


@pytest.mark.parametrize("address", [ADDRESS, ADDRESS.upper().replace("0X", "0x"), ADDRESS[2:],
                                     bytes.fromhex(ADDRESS[2:])])
def test_person_pointer_vector_any_address_form(address):
    assert person_pointer(address) == "a51472cb4df63b199a4de01335b1b4d1bbee27ff4f03340aa1d592f26c6acfe2"


def test_phone_pointer_vector():
    assert phone_pointer("+254123456789") == "be3cc8212b7eb57c6217ddd42230bd8ccd2f01382bf8c1c77d3a683fa5a9bb16"


def test_named_custom_pointer_vectors():
    assert custom_name_pointer("areas") == "8f3da0c90ba2b89ff217da96f6088cbaf987a1b58bc33c3a5e526e53cec7cfed"
    assert custom_name_pointer("areas", ":cic.area") == \
        "da6194e6f33726546e82c328df4c120b844d6427859156518bd600765bf8b2b7"


def test_immutable_pointer_vector_starts_and_ends_as_published():
    digest = pointer(b"foo", "")
    assert digest.startswith("2c26b46b") and digest.endswith("e7ae")


def test_address_pointers_use_their_salts():
    raw = bytes.fromhex(ADDRESS[2:])
    assert custom_pointer(ADDRESS) == pointer(raw, ":cic.custom")
    assert preferences_pointer(ADDRESS) == pointer(raw, ":cic.preferences")
    assert len({person_pointer(ADDRESS), custom_pointer(ADDRESS), preferences_pointer(ADDRESS)}) == 3


@pytest.mark.parametrize("bad", ["0x1234", "zz" * 20, b"\x00" * 19])
def test_bad_addresses_are_refused(bad):
    with pytest.raises(UsageError):
        person_pointer(bad)
