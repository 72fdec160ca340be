"""verify checks for cic-meta: ``metadata``, ``metadata_phone``, ``metadata_custom``.

Each check has the signature of the ``cic_seed.verify`` table, ``check(ctx, users)`` ->
``{address: reason}`` for the users that fail, and reads with many plain GETs in flight.
A user needs ``address`` (new), ``tel`` (E.164), ``person`` (the ``new/`` record as a dict)
and ``tags``. The MetaClient is opened on first use for META_URL and kept in
``ctx.clients["meta"]`` (close it with ``.close()``). ``*_failures(client, users)`` do the
same work without a verify context.
"""
from .meta_client import MetaClient, MetaRequestError
from .meta_import import normalize_address
from .pointers import address_bytes, custom_pointer, person_pointer, phone_pointer

_MISSING = object()


def fetch_many(client: MetaClient, pointers: list) -> list:
    """Plain GETs of ``pointers`` in parallel: per pointer the document, ``_MISSING`` (404), or
    the MetaRequestError."""
    found = {}
    for pointer, value, error in client.run_many(lambda p: client.get(p, _MISSING), pointers):
        found[pointer] = error if error is not None else value
    return [found[p] for p in pointers]


def _compare(client, users, pointer_of, judge):
    answers = fetch_many(client, [pointer_of(u) for u in users])
    failures = {}
    for user, answer in zip(users, answers):
        if isinstance(answer, MetaRequestError):
            failures[user.address] = str(answer)
            continue
        reason = judge(user, answer)
        if reason:
            failures[user.address] = reason
    return failures


def _person(user, doc):
    if doc is _MISSING:
        return f"no person metadata at {person_pointer(user.address)}"
    if doc != user.person:
        if not isinstance(doc, dict):
            return f"person metadata is a {type(doc).__name__}, not the new/ record"
        keys = sorted(k for k in set(doc) | set(user.person) if doc.get(k) != user.person.get(k))
        return f"person metadata differs from the new/ record in {', '.join(keys)}"
    return None


def _phone(user, value):
    if value is _MISSING:
        return f"no phone pointer for {user.tel}"
    if not isinstance(value, str):
        return f"phone pointer of {user.tel} holds a {type(value).__name__}, not an address"
    if normalize_address(value) != address_bytes(user.address).hex().upper():
        return f"phone pointer of {user.tel} gives {value}, not the user's address"
    return None


def _custom(user, doc):
    if doc is _MISSING:
        return f"no custom metadata (tags) at {custom_pointer(user.address)}"
    tags = doc.get("tags") if isinstance(doc, dict) else None
    if not isinstance(tags, list):
        return "custom metadata has no tags list"
    missing = [t for t in user.tags if t not in tags]
    return f"custom metadata lacks the tags {', '.join(missing)}" if missing else None


def metadata_failures(client, users) -> dict:
    """Users whose person document is not the ``new/`` record (parsed-dict equality)."""
    return _compare(client, users, lambda u: person_pointer(u.address), _person)


def metadata_phone_failures(client, users) -> dict:
    """Users whose phone pointer does not give their address (quotes, 0x and case ignored)."""
    return _compare(client, users, lambda u: phone_pointer(u.tel), _phone)


def metadata_custom_failures(client, users) -> dict:
    """Users whose custom document lacks one of their tags (cic-ussd adds ``ussd``: extra tags are fine)."""
    return _compare(client, [u for u in users if u.tags], lambda u: custom_pointer(u.address), _custom)


def meta_client(ctx) -> MetaClient:
    """The verify run's MetaClient, opened on first use."""
    client = ctx.clients.get("meta")
    if client is None:
        client = MetaClient(ctx.settings.get("META_URL", "http://localhost:63380"), workers=8).open()
        client.check()
        ctx.clients["meta"] = client
    return client


def check_metadata(ctx, users):
    """verify check ``metadata``."""
    return metadata_failures(meta_client(ctx), users)


def check_metadata_phone(ctx, users):
    """verify check ``metadata_phone``."""
    return metadata_phone_failures(meta_client(ctx), users)


def check_metadata_custom(ctx, users):
    """verify check ``metadata_custom``."""
    return metadata_custom_failures(meta_client(ctx), users)


# name -> (function, custodial?), the shape of cic_seed.verify.CHECKS
CHECKS = {
    "metadata": (check_metadata, False),
    "metadata_phone": (check_metadata_phone, False),
    "metadata_custom": (check_metadata_custom, False),
}
