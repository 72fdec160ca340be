"""The devnet USSD service's logic: request parsing, the menus, and its phone table (no HTTP here).

What a dial gets (reference cic-ussd.md sections 1, 2 and 5):

- a service code not configured (USSD_SERVICE_CODE): 200, plain text with no CON/END prefix;
- a phone that is not an optional ``+`` and 10 to 12 digits: 400 with an empty body;
- an unknown phone, new session: the V22 language menu in the fallback locale (sw,
  "CON Karibu Sarafu Network!"); a language number in the same session creates the account
  ONCE per phone (the real server creates one per pick) and answers END;
- an unknown phone dialling the 2021 way (JSON body, or a new session whose text is the
  service code): the account is created at once and the answer is END (V1/L21 clients);
- a phone with an account (pending or created), new session: the 2021 post-registration
  menu "CON Welcome to Sarafu" (what verify's ``ussd`` check looks for); a language number
  then ends the session and creates nothing.

Bad input never gets a 5xx: only the last ``*`` segment of ``text`` counts, and a
non-numeric choice is an invalid option (the real server answers 500 there).
"""
import json
import re
import sqlite3
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import parse_qs

from cic_seed.person import PersonFormatError, normalize_phone

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
MAX_BODY = 1024
PHONE = re.compile(r"^\+?[0-9]{10,12}$")
LANGUAGES = (("en", "English"), ("sw", "Kiswahili"), ("kam", "Kamba"), ("kik", "Gikuyu"), ("luo", "Dholuo"),
             ("mij", "Mijikenda"), ("orm", "Borana"))
PAGE = 3
SESSIONS = 100_000  # kept in memory, oldest dropped first

LANGUAGE_TITLE = "CON Karibu Sarafu Network!"
NEXT, BACK, LEAVE = "11. Mbele", "22. Nyuma", "00. Ondoka"
REGISTERED = "CON Welcome to Sarafu\n1. English\n2. Kiswahili\n3. Help"
CREATING = {"en": "END Your account is being created. You will receive an SMS when your account is ready.",
            "sw": "END Akaunti yako ya Sarafu inatayarishwa. Utapokea ujumbe wa SMS akaunti yako ikiwa tayari."}
READY = {"en": "END Your Sarafu account is ready.", "sw": "END Akaunti yako ya Sarafu iko tayari."}
LEGACY_CREATING = f"{CREATING['en']}\n{CREATING['sw'][4:]}\n"
THANKS = "END Asante kwa kutumia huduma ya Sarafu."
HELP = "END For help, call Sarafu Network customer care."
INVALID = f"CON Chaguo si sahihi.\n{LEAVE}"
WRONG_CODE = "Bonyeza {code} kutumia mtandao wa Sarafu."


class Rejected(Exception):
    """A request the service refuses: HTTP ``status`` with ``reason`` (and that body unless ``empty``)."""

    def __init__(self, status: int, reason: str, empty: bool = False):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.body = "" if empty else reason


@dataclass(frozen=True)
class Dial:
    """One USSD request: the four fields, and whether it came as 2021 JSON."""

    service_code: str
    phone: str
    session_id: str
    text: str = ""
    legacy: bool = False


def parse_dial(content_type: str, body: bytes) -> Dial:
    """The Dial in a form-encoded (current cic-ussd) or JSON (2021 cic-ussd) body; Rejected if neither."""
    kind = (content_type or "").split(";")[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(400, "Body is not UTF-8") from None
    if kind == FORM:
        fields = {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}
    elif kind == JSON:
        try:
            fields = json.loads(text)
        except ValueError:
            raise Rejected(400, "Body is not JSON") from None
        if not isinstance(fields, dict):
            raise Rejected(400, "Body is not a JSON object")
    else:
        raise Rejected(405, "Urlencoded, please")
    values = {k: fields.get(k) for k in ("serviceCode", "phoneNumber", "sessionId", "text")}
    missing = [k for k in ("serviceCode", "phoneNumber", "sessionId") if not isinstance(values[k], str) or
               not values[k]]
    if missing:
        raise Rejected(400, f"Missing {', '.join(missing)}")
    text_value = values["text"] if isinstance(values["text"], str) else ""
    return Dial(values["serviceCode"], values["phoneNumber"], values["sessionId"], text_value, kind == JSON)


def e164(dial: Dial) -> str:
    """The phone as E.164 (the table key and what the phone pointer hashes); Rejected if invalid.

    Current cic-ussd checks the raw value; 2021 cic-ussd normalised it (region KE) first."""
    raw = dial.phone
    if dial.legacy:
        try:
            raw = normalize_phone(raw)
        except PersonFormatError:
            raise Rejected(400, "Invalid phone number format", empty=True) from None
    if not PHONE.match(raw):
        raise Rejected(400, "Invalid phone number format", empty=True)
    return raw if raw.startswith("+") else normalize_phone(raw)


@dataclass(frozen=True)
class Account:
    phone: str
    status: str  # pending (cic-eth asked) | created (address known) | ready (phone pointer written)
    address: str | None
    language: str | None
    root_id: str
    create_id: str


class PhoneTable:
    """phone -> account, in SQLite (``path``); one row per phone is what makes creation idempotent."""

    COLUMNS = "phone, status, address, language, root_id, create_id"

    def __init__(self, path):
        self.path = path
        self._db = None
        self._lock = threading.Lock()

    def open(self) -> "PhoneTable":
        db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS account (phone TEXT PRIMARY KEY, status TEXT NOT NULL, "
                   "address TEXT, language TEXT, root_id TEXT NOT NULL UNIQUE, create_id TEXT NOT NULL, "
                   "created REAL NOT NULL)")
        self._db = db
        return self

    def close(self):
        if self._db is not None:
            self._db.close()
            self._db = None

    def _rows(self, sql, args=()):
        with self._lock:
            return [Account(*row) for row in self._db.execute(sql, args).fetchall()]

    def get(self, phone: str) -> Account | None:
        """The account of ``phone``, or None."""
        rows = self._rows(f"SELECT {self.COLUMNS} FROM account WHERE phone = ?", (phone,))
        return rows[0] if rows else None

    def claim(self, phone: str, language) -> Account | None:
        """Record a new pending account for ``phone``; None if the phone has one already."""
        root_id, create_id = str(uuid.uuid4()), str(uuid.uuid4())
        with self._lock:
            cursor = self._db.execute("INSERT OR IGNORE INTO account VALUES (?, 'pending', NULL, ?, ?, ?, ?)",
                                      (phone, language, root_id, create_id, time.time()))
        return Account(phone, "pending", None, language, root_id, create_id) if cursor.rowcount == 1 else None

    def set_status(self, phone: str, status: str, address=None):
        """Move an account on (``created`` with its address, then ``ready``)."""
        with self._lock:
            self._db.execute("UPDATE account SET status = ?, address = COALESCE(?, address) WHERE phone = ?",
                             (status, address, phone))

    def unfinished(self) -> list:
        """Accounts whose address or phone pointer is still to come."""
        return self._rows(f"SELECT {self.COLUMNS} FROM account WHERE status != 'ready' ORDER BY created")

    def counts(self) -> dict:
        """status -> number of accounts."""
        with self._lock:
            return dict(self._db.execute("SELECT status, COUNT(*) FROM account GROUP BY status").fetchall())


class Sessions:
    """sessionId -> (phone, menu, page), the newest SESSIONS kept."""

    def __init__(self, limit: int = SESSIONS):
        self.limit = limit
        self._items = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session_id, phone):
        """(phone, menu, page) of an open session of ``phone``, else None."""
        with self._lock:
            item = self._items.get(session_id)
        return item if item is not None and item[0] == phone else None

    def put(self, session_id, phone, menu, page=0):
        with self._lock:
            self._items[session_id] = (phone, menu, page)
            self._items.move_to_end(session_id)
            while len(self._items) > self.limit:
                self._items.popitem(last=False)

    def end(self, session_id):
        with self._lock:
            self._items.pop(session_id, None)


def language_menu(page: int) -> str:
    """The language menu (page 0, 1, ...) in the fallback locale, sw, as 2022 cic-ussd shows it."""
    first = page * PAGE
    lines = [LANGUAGE_TITLE] + [f"{i + 1}. {name}" for i, (_, name) in enumerate(LANGUAGES[first:first + PAGE], first)]
    if first + PAGE < len(LANGUAGES):
        lines.append(NEXT)
    if page:
        lines.append(BACK)
    lines.append(LEAVE)
    return "\n".join(lines)


class Menu:
    """Answers dials: ``answer(dial) -> (status, text)``. ``create(account)`` is called once per new
    account (after its row is stored); ``service_codes`` are the codes this service answers."""

    def __init__(self, table: PhoneTable, create, service_codes):
        self.table = table
        self.create = create
        self.service_codes = tuple(service_codes)
        self.sessions = Sessions()

    def answer(self, dial: Dial):
        """(HTTP status, text) for a dial; Rejected for an invalid phone."""
        if dial.service_code not in self.service_codes:
            return 200, WRONG_CODE.format(code=self.service_codes[0])
        phone = e164(dial)
        account = self.table.get(phone)
        session = self.sessions.get(dial.session_id, phone)
        choice = dial.text.split("*")[-1].strip()
        if session is None:
            if account is not None:
                self.sessions.put(dial.session_id, phone, "registered")
                return 200, REGISTERED
            if dial.legacy or dial.text in self.service_codes:  # 2021 clients: created on the first dial
                self._claim(phone, None)
                return 200, LEGACY_CREATING
            self.sessions.put(dial.session_id, phone, "language")
            return 200, language_menu(0)
        if choice == "":  # the same session dialled again without a choice: the same menu
            return 200, REGISTERED if session[1] == "registered" else language_menu(session[2])
        if account is not None or session[1] == "registered":
            return 200, self._registered_choice(dial.session_id, account, choice)
        return 200, self._language_choice(dial.session_id, phone, session[2], choice)

    def _claim(self, phone, language):
        account = self.table.claim(phone, language)
        if account is not None:
            self.create(account)
        return account

    def _language_choice(self, session_id, phone, page, choice):
        last_page = (len(LANGUAGES) - 1) // PAGE
        if choice == "00":
            self.sessions.end(session_id)
            return THANKS
        if choice in ("11", "22"):
            page += 1 if choice == "11" else -1
            if not 0 <= page <= last_page:
                return INVALID
            self.sessions.put(session_id, phone, "language", page)
            return language_menu(page)
        if not choice.isdigit() or not 1 <= int(choice) <= len(LANGUAGES):
            return INVALID
        language = LANGUAGES[int(choice) - 1][0]
        self.sessions.end(session_id)
        self._claim(phone, language)
        return CREATING.get(language, CREATING["sw"])

    def _registered_choice(self, session_id, account, choice):
        if choice not in ("1", "2", "3", "00"):
            return INVALID
        self.sessions.end(session_id)
        if choice == "3":
            return HELP
        if choice == "00":
            return THANKS
        language = "en" if choice == "1" else "sw"
        ready = account is not None and account.status == "ready"
        return (READY if ready else CREATING)[language]
