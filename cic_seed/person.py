"""The Person document stored in cic-meta, in the cic-types 0.2.2 format.

``Person.serialize()`` gives the dict that cic-types' ``Person.serialize()`` gives: keys
``date_registered, gender, identities, location, products, vcard`` in that order, then
``date_of_birth`` only when it is not empty. ``vcard`` is the base64 of a vCard 3.0 built with
vobject (CRLF lines ``BEGIN, VERSION, [EMAIL], FN, N, TEL;TYP=CELL, END``).

Building a vCard with vobject costs about 0.6 ms, which caps generation near 1,500 users/s.
``vcard_text`` therefore writes the few plain-ASCII cards it can prove identical itself
(no character that vobject escapes, no line long enough to fold) and hands every other card
to vobject; ``tests/unit/test_person.py`` compares both paths byte for byte.

identities use the 2021 shape ``{"evm": {"oldchain:1": ["0x..."], "bloxberg:8996": ["0x..."]}}``
(keys from ``ChainSpec.identity_key``); addresses are stored ``0x`` + EIP-55 checksum.
"""
import base64
import binascii
import re
from dataclasses import dataclass, field

import phonenumbers
import vobject
from eth_hash.auto import keccak

from .chainspec import ChainSpec
from .errors import SeedError

OLD_CHAIN = ChainSpec("evm", "oldchain", 1)
GENDERS = ("female", "male", "other")

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_HEX40 = re.compile(r"^(0x|0X)?[0-9a-fA-F]{40}$")
# characters vobject writes unchanged in EMAIL, FN, N and TEL values
_PLAIN = re.compile(r"^[A-Za-z0-9 '.\-_@+]+$")
_FOLD_AT = 75  # vobject folds lines of 75 characters or more
# EIP-55 with string operations in C: a hex letter is upper-cased (xor 0x20, the space character)
# where the keccak digest's nibble at the same position is 8 or more
_NIBBLE_HIGH = str.maketrans("0123456789abcdef", "\0" * 8 + " " * 8)
_IS_LETTER = str.maketrans("0123456789abcdef", "\0" * 10 + " " * 6)


class PersonFormatError(SeedError, ValueError):
    """A person record or vCard that cannot be read."""


def checksum_address(address) -> str:
    """``0x`` + EIP-55 checksum form of a 20-byte address given as bytes or hex (any case)."""
    if isinstance(address, (bytes, bytearray)):
        if len(address) != 20:
            raise PersonFormatError(f"an address has 20 bytes, got {len(address)}")
        lower = address.hex()
    else:
        if not isinstance(address, str) or not _HEX40.match(address):
            raise PersonFormatError(f"not an address (40 hex digits, optional 0x): {address!r}")
        lower = address[-40:].lower()
    digest = keccak(lower.encode()).hex()[:40]
    flips = (int.from_bytes(digest.translate(_NIBBLE_HIGH).encode(), "big")
             & int.from_bytes(lower.translate(_IS_LETTER).encode(), "big"))
    return "0x" + (int.from_bytes(lower.encode(), "big") ^ flips).to_bytes(40, "big").decode()


def normalize_phone(number: str, region: str = "KE") -> str:
    """E.164 form of a phone number (``0712 345678`` -> ``+254712345678``), as cic-types does."""
    if isinstance(number, str) and _E164.match(number):
        return number
    try:
        parsed = phonenumbers.parse(str(number), region)
    except phonenumbers.NumberParseException:
        raise PersonFormatError(f"not a phone number: {number!r}") from None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def vcard_text_vobject(given: str, family: str, tel: str, email: str | None = None) -> str:
    """The vCard 3.0 text, built with vobject exactly as cic-types 0.2.2 builds it."""
    card = vobject.vCard()
    if email:
        card.add("email").value = email
    card.add("fn").value = f"{given}, {family}"
    card.add("n").value = vobject.vcard.Name(family=family, given=given)
    tel_line = card.add("tel")
    tel_line.value = tel
    tel_line.params["TYP"] = ["CELL"]
    return card.serialize()


def vcard_text(given: str, family: str, tel: str, email: str | None = None) -> str:
    """The vCard text: written directly when provably identical to vobject's, else by vobject."""
    lines = [f"FN:{given}\\, {family}", f"N:{family};{given};;;", f"TEL;TYP=CELL:{tel}"]
    if email:
        lines.insert(0, f"EMAIL:{email}")
    plain = all(_PLAIN.match(v) for v in (given, family, tel, email or "-"))
    if plain and all(len(line) < _FOLD_AT for line in lines):
        return "BEGIN:VCARD\r\nVERSION:3.0\r\n" + "\r\n".join(lines) + "\r\nEND:VCARD\r\n"
    return vcard_text_vobject(given, family, tel, email)


def _parse_vcard_fast(text: str):
    """(given, family, tel, email) for cards in the plain form vcard_text writes, else None."""
    lines = text.split("\r\n")
    if len(lines) not in (7, 8) or lines[-1] != "" or lines[0] != "BEGIN:VCARD" or lines[1] != "VERSION:3.0":
        return None
    email = None
    rest = lines[2:-2]
    if len(rest) == 4:
        if not rest[0].startswith("EMAIL:"):
            return None
        email = rest[0][6:]
        rest = rest[1:]
    fn, n, tel, end = rest + [lines[-2]]
    if not (fn.startswith("FN:") and n.startswith("N:") and tel.startswith("TEL;TYP=CELL:") and end == "END:VCARD"):
        return None
    parts = n[2:].split(";")
    if len(parts) != 5 or any(parts[2:]) or "\\" in n or "," in n or "\\" in tel or (email and "\\" in email):
        return None
    return parts[1], parts[0], tel[13:], email


def _parse_vcard(text: str):
    fast = _parse_vcard_fast(text)
    if fast is not None:
        return fast
    try:
        card = vobject.readOne(text)
        name = card.n.value
        tel = card.tel.value
        email = card.email.value if "email" in card.contents else None
    except Exception as e:  # vobject raises many kinds (ParseError, AttributeError, KeyError)
        raise PersonFormatError(f"unreadable vcard: {e}") from None
    return name.given, name.family, tel, email


@dataclass
class Person:
    """A user as cic-meta stores it; see the module docstring for the format."""

    given: str
    family: str
    tel: str
    gender: str = "other"
    date_registered: int = 0
    email: str | None = None
    date_of_birth: dict = field(default_factory=dict)
    location: dict = field(default_factory=dict)
    products: list = field(default_factory=list)
    identities: dict = field(default_factory=dict)

    def vcard(self) -> str:
        """The vCard 3.0 text (CRLF lines) of this person."""
        return vcard_text(self.given, self.family, normalize_phone(self.tel), self.email)

    def serialize(self) -> dict:
        """The cic-types 0.2.2 dict, keys in its order; date_of_birth only when not empty."""
        data = {
            "date_registered": self.date_registered,
            "gender": self.gender,
            "identities": self.identities,
            "location": self.location,
            "products": self.products,
            "vcard": base64.b64encode(self.vcard().encode("utf-8")).decode("ascii"),
        }
        if self.date_of_birth:
            data["date_of_birth"] = self.date_of_birth
        return data

    @classmethod
    def deserialize(cls, data: dict) -> "Person":
        """Read a dict as ``serialize`` (or cic-types) writes it; PersonFormatError if it cannot."""
        if not isinstance(data, dict):
            raise PersonFormatError(f"a person is a JSON object, got {type(data).__name__}")
        missing = [k for k in ("date_registered", "identities", "vcard") if k not in data]
        if missing:
            raise PersonFormatError(f"person record lacks {', '.join(missing)}")
        try:
            text = base64.b64decode(data["vcard"], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, TypeError, ValueError):
            raise PersonFormatError("vcard is not base64 of UTF-8 text") from None
        given, family, tel, email = _parse_vcard(text)
        if not isinstance(data["identities"], dict):
            raise PersonFormatError("identities is not an object")
        return cls(given=given, family=family, tel=tel, email=email or None,
                   gender=data.get("gender", "other"), date_registered=data["date_registered"],
                   date_of_birth=dict(data.get("date_of_birth") or {}), location=dict(data.get("location") or {}),
                   products=list(data.get("products") or []), identities=data["identities"])

    def add_identity(self, chain_spec: ChainSpec, address) -> str:
        """Record ``address`` (stored 0x + checksum) for ``chain_spec``; returns the stored form."""
        stored = checksum_address(address)
        addresses = self.identities.setdefault(chain_spec.arch, {}).setdefault(chain_spec.identity_key, [])
        if stored not in addresses:
            addresses.append(stored)
        return stored

    def address_on(self, chain_spec: ChainSpec) -> str | None:
        """The first address recorded for ``chain_spec``, or None."""
        addresses = self.identities.get(chain_spec.arch, {}).get(chain_spec.identity_key) or []
        return addresses[0] if addresses else None

    def old_address(self, old_chain: ChainSpec = OLD_CHAIN) -> str:
        """The generated address on the old chain (``oldchain:1``); PersonFormatError if absent."""
        address = self.address_on(old_chain)
        if address is None:
            raise PersonFormatError(f"person has no {old_chain.identity_key} address in identities")
        return address
