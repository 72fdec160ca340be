"""The Automerge 0.14 ``save()`` format that cic-meta envelopes carry, the subset the devnet needs.

A payload is a transit-JSON change log: lists are ``["~#iL", [...]]``, maps ``["~#iM", [k, v, ...]]``.
Reading supports ``^N`` cache references, ``["^ ", ...]`` and plain-object maps, ``~`` escapes
and the ``~i``/``~n``/``~d``/``~?``/``~_`` scalars. Changes are replayed in log order with the ops
makeMap, makeTable, makeList, makeText, ins, set, link and del. Concurrent changes from several
actors resolve by log order, not by Automerge's actor ordering; list inserts after the same
element follow Automerge's RGA rule (newest first). Writing produces one change per document.
Checked by hand against Automerge 0.14.2 (npm): it loads what ``envelope`` writes, and a save()
it made is a test vector in tests/unit/test_meta_automerge.py.
"""
import base64
import json
import uuid

ROOT = "00000000-0000-0000-0000-000000000000"
EXT = {"network": {"name": "pgp", "version": "2"}, "engine": {"name": "automerge", "version": "0.14.1"}}
SCALARS = {"~_": None, "~?t": True, "~?f": False}
LIST_TAGS = ("~#iL", "~#iS", "~#iOS", "~#'", "~#list")
MAX_DEPTH = 100


class PayloadError(ValueError):
    """The payload is not a loadable Automerge document (in the supported subset)."""


def compact(value) -> str:
    """JSON the way JSON.stringify writes it (no spaces, UTF-8 kept)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _escape(value):
    if isinstance(value, str) and value[:1] in ("~", "^", "`"):
        return "~" + value
    return value


class _ChangeWriter:
    """Builds one Automerge change that sets keys on the root map."""

    def __init__(self):
        self.actor = str(uuid.uuid4())
        self.ops = []
        self.links = []
        self.elem = 0
        self.objects = 0

    def new_object_id(self):
        """A uuid-shaped id, unique in this change (the actor's random prefix and a counter)."""
        self.objects += 1
        return f"{self.actor[:24]}{self.objects:012x}"

    def put(self, obj, key, value):
        # ops are written as they go out: ["^1", [...]] is a ~#iM map, ^1 being its transit cache ref
        ops = self.ops
        if type(key) is str and key[:1] in ("~", "^", "`"):
            key = "~" + key
        if not isinstance(value, (dict, list)):
            if type(value) is str and value[:1] in ("~", "^", "`"):
                value = "~" + value
            ops.append(["^1", ["action", "set", "obj", obj, "key", key, "value", value]])
            return
        child = self.new_object_id()
        if isinstance(value, dict):
            ops.append(["^1", ["action", "makeMap", "obj", child]])
            for k, v in value.items():
                self.put(child, str(k), v)
        else:
            ops.append(["^1", ["action", "makeList", "obj", child]])
            prev = "_head"
            for v in value:
                self.elem += 1
                ops.append(["^1", ["action", "ins", "obj", child, "key", prev, "elem", self.elem]])
                prev = f"{self.actor}:{self.elem}"
                self.put(child, prev, v)
        ops.append(["^1", ["action", "link", "obj", obj, "key", key, "value", child]])
        self.links.append([obj, child])

    def payload(self, message) -> str:
        """The save() string: ~#iL is cached as ^0 and ~#iM as ^1 where they first appear."""
        change = ["~#iM", ["ops", ["^0", self.ops], "actor", self.actor, "seq", 1, "deps", ["^1", []],
                           "message", _escape(message), "undoable", False]]
        return compact(["~#iL", [change]])


def envelope(doc: dict, message="update") -> dict:
    """The Envelope of a document ``{id, timestamp, data, signature?}``. Its ``digest`` covers
    the links of everything but the signature, which defaults to ``{"digest": digest}``."""
    writer = _ChangeWriter()
    for key, value in doc.items():
        if key != "signature":
            writer.put(ROOT, key, value)
    digest = base64.b64encode(compact(writer.links).encode()).decode()
    writer.put(ROOT, "signature", doc.get("signature") or {"digest": digest})
    return {"name": "cic", "version": "1", "ext": EXT, "payload": writer.payload(message), "digest": digest}


class _Decoder:
    """transit-JSON reader with the read cache that ``^N`` references point into."""

    def __init__(self):
        self.cache = []

    def _string(self, s, as_key):
        if s.startswith("^") and s != "^ ":
            n = [ord(c) - 48 for c in s[1:]]
            return self.cache[n[0] if len(n) == 1 else n[0] * 44 + n[1]]
        if len(s) > 3 and (as_key or s[:2] in ("~#", "~:", "~$")):
            if len(self.cache) == 44 * 44:
                self.cache.clear()
            self.cache.append(s)
        return s

    @staticmethod
    def _scalar(s):
        if s in SCALARS:
            return SCALARS[s]
        if s[:2] in ("~i", "~n"):
            return int(s[2:])
        if s[:2] == "~d":
            return float(s[2:])
        if s[:1] == "~" and s[1:2] in ("~", "^", "`"):
            return s[1:]
        return s

    def decode(self, node, as_key=False):
        kind = type(node)
        if kind is str:
            if node[:1] not in ("~", "^"):  # the common case: a plain string
                if as_key and len(node) > 3:
                    self._string(node, True)
                return node
            return self._scalar(self._string(node, as_key))
        if kind is dict:
            return {self.decode(k, True): self.decode(v) for k, v in node.items()}
        if kind is not list:
            return node
        if len(node) == 2 and type(node[0]) is str and node[0][:1] in ("~", "^") and node[0] != "^ ":
            tag = self._string(node[0], False)
            if not tag.startswith("~#"):
                return [self._scalar(tag), self.decode(node[1])]
            value = self.decode(node[1])
            if tag in ("~#iM", "~#iOM"):
                return {value[i]: value[i + 1] for i in range(0, len(value) - 1, 2)}
            if tag in LIST_TAGS:
                return value
            raise PayloadError(f"unsupported transit tag {tag}")
        if node and node[0] == "^ ":
            items = node[1:]
            return {self.decode(items[i], True): self.decode(items[i + 1]) for i in range(0, len(items) - 1, 2)}
        decode = self.decode
        return [item if type(item) is str and item[:1] not in ("~", "^") else decode(item) for item in node]


class _Link(str):
    """An object id stored under a key by a ``link`` op."""


class _Seq:
    """A list object: inserted elements and the values set on them."""

    def __init__(self):
        self.elements = []  # (counter, actor, element id, inserted after)
        self.values = {}
        self.ids = set()


def load_payload(payload: str) -> dict:
    """Replay an Automerge save() string and return the root map as plain Python data.
    Raises PayloadError when it cannot."""
    try:
        changes = _Decoder().decode(json.loads(payload))
        if not isinstance(changes, list):
            raise PayloadError("payload is not a list of changes")
        objects = {ROOT: {}}
        for change in changes:
            actor = change.get("actor", "")
            for op in change["ops"]:
                _apply(objects, actor, op)
        return _materialize(objects, ROOT, 0, set())
    except PayloadError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as e:
        raise PayloadError(f"payload is not a loadable Automerge document ({type(e).__name__})") from None


def _apply(objects, actor, op):
    action, obj = op["action"], op["obj"]
    if action in ("makeMap", "makeTable"):
        objects[obj] = {}
    elif action in ("makeList", "makeText"):
        objects[obj] = _Seq()
    elif action == "ins":
        seq = objects[obj]
        elem_id = f"{actor}:{op['elem']}"
        if elem_id in seq.ids:
            raise PayloadError(f"element {elem_id} inserted twice")
        seq.ids.add(elem_id)
        seq.elements.append((int(op["elem"]), actor, elem_id, op["key"]))
    elif action in ("set", "link", "del"):
        target = objects[obj]
        values = target if isinstance(target, dict) else target.values
        if action == "del":
            values.pop(op["key"], None)
        else:
            value = op.get("value")
            values[op["key"]] = _Link(value) if action == "link" else value
    else:
        raise PayloadError(f"unsupported Automerge op {action!r}")


def _materialize(objects, obj_id, depth, done):
    if depth > MAX_DEPTH:
        raise PayloadError("document nested too deeply")
    if obj_id in done:
        raise PayloadError(f"object {obj_id} is linked twice")
    done.add(obj_id)
    target = objects[obj_id]

    def resolve(value):
        return _materialize(objects, value, depth + 1, done) if isinstance(value, _Link) else value

    if isinstance(target, dict):
        return {key: resolve(value) for key, value in target.items()}
    children = {}
    for counter, actor, elem_id, after in target.elements:
        children.setdefault(after, []).append((counter, actor, elem_id))
    order, seen, stack = [], set(), ["_head"]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node != "_head":
            order.append(node)
        # pushed oldest first, so the newest insert after an element is visited first
        stack.extend(elem_id for _, _, elem_id in sorted(children.get(node, [])))
    return [resolve(target.values[e]) for e in order if e in target.values]
