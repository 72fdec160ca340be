"""cic-meta pointers: ``sha256(identifier bytes + salt)`` as 64 lower-case hex digits, no 0x.

Address-keyed pointers hash the 20 raw address bytes (hex case and checksum do not matter);
phone pointers hash the UTF-8 of the E.164 number. Salts are the cic-types ``MetadataPointer``
values.
"""
import hashlib

from .errors import UsageError

PERSON = ":cic.person"
PHONE = ":cic.phone"
CUSTOM = ":cic.custom"
PREFERENCES = ":cic.preferences"


def address_bytes(address) -> bytes:
    """The 20 bytes of an address given as bytes or hex with or without 0x, any case."""
    if isinstance(address, (bytes, bytearray)):
        raw = bytes(address)
    else:
        text = str(address)
        if text[:2] in ("0x", "0X"):
            text = text[2:]
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise UsageError(f"not a hex address: {address!r}") from None
    if len(raw) != 20:
        raise UsageError(f"an address has 20 bytes, got {len(raw)} in {address!r}")
    return raw


def pointer(identifier: bytes, salt: str) -> str:
    """sha256 of ``identifier`` followed by the UTF-8 ``salt``, lower-case hex."""
    return hashlib.sha256(identifier + salt.encode("utf-8")).hexdigest()


def person_pointer(address) -> str:
    """Where cic-meta keeps the Person document of ``address``."""
    return pointer(address_bytes(address), PERSON)


def phone_pointer(e164: str) -> str:
    """Where cic-meta keeps the address of the account with this E.164 phone number."""
    return pointer(e164.encode("utf-8"), PHONE)


def custom_pointer(address) -> str:
    """Where cic-meta keeps ``{"tags": [...]}`` of ``address``."""
    return pointer(address_bytes(address), CUSTOM)


def custom_name_pointer(name: str, salt: str = CUSTOM) -> str:
    """A named custom document (``areas`` etc.), as the Node ``Custom.toKey(name, salt)``."""
    return pointer(name.encode("utf-8"), salt)


def preferences_pointer(address) -> str:
    """Where cic-meta keeps ``{"preferred_language": ...}`` of ``address``."""
    return pointer(address_bytes(address), PREFERENCES)
