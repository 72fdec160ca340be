"""cic-ussd HTTP client: dials as the seeders of both generations send them, and reads the answers.

A dial is ``POST <USSD_PROVIDER>/?username=<USSD_USER>&password=<USSD_PASS>`` with the body
form-encoded as current cic-ussd requires (``serviceCode``, ``phoneNumber`` E.164 with its ``+``,
``sessionId``, ``text``), or, with ``json_body``, the 2021 JSON body. The answer is a text that
starts ``CON `` (the session goes on) or ``END ``.

``registered(body)`` reads an answer to a fresh dial with ``text=''``: the phone has an account
when the service shows a post-registration state of either server generation (reference
cic-ussd.md 2b/2d/5): the 2021 menu "CON Welcome to Sarafu" (what the devnet answers), the 2022
PIN prompt (pending account, exact strings) or the 2022 start menu of an active account
("CON Balance"/"CON Salio"). The 2022 language menu of an unknown phone, "CON Welcome to Sarafu
Network!" in English, is NOT taken for a registration, although the 2022 verify.py did.

Each worker thread keeps one persistent ``http.client`` connection; connection errors and 5xx
answers are retried with backoff (as the 2022 seeder retries 5xx), a 4xx is a ``UssdRequestError``.
"""
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

from .errors import SeedError, ServiceUnavailable, UsageError
from .http_pool import PooledClient

PIN_PROMPTS = ("CON Please enter a new four number PIN for your account.",
               "CON Tafadhali weka pin mpya yenye nambari nne kwa akaunti yako")
START_MENUS = ("CON Balance", "CON Salio")
UNKNOWN_MENUS = ("CON Welcome to Sarafu Network!", "CON Karibu Sarafu Network")
HINT = "start it (make devnet-up BACKEND=cic_ussd) or point USSD_PROVIDER / --ussd-provider at a running cic-ussd"


class UssdRequestError(SeedError):
    """The USSD service refused a dial (4xx, or 5xx after the retries)."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


def registered(body: str) -> bool:
    """True when an answer to a fresh ``text=''`` dial says the phone has an account."""
    text = body.rstrip()
    if text in PIN_PROMPTS or text.startswith(START_MENUS):
        return True
    if text.startswith(UNKNOWN_MENUS):
        return False
    return body[:3] + " " + body[4:11] == "CON Welcome"  # the 2021 check, as verify.py made it


def classify(body: str) -> str:
    """``registered``, ``menu`` (any other CON: a menu to choose from), ``end``, or ``other``."""
    if registered(body):
        return "registered"
    if body.startswith("CON"):
        return "menu"
    return "end" if body.startswith("END") else "other"


class UssdClient(PooledClient):
    """Dials one cic-ussd service. Use as a context manager (or ``open()``/``close()``)."""

    MAX_BACKOFF = 3.0  # seconds

    def __init__(self, url: str, service_code: str, user: str = "", password: str = "", json_body: bool = False,
                 timeout: float = 15.0, retries: int = 5, backoff: float = 0.2):
        self.url = (url or "").rstrip("/")
        self.service_code = service_code
        self.user = user or ""
        self.password = password or ""
        self.json_body = json_body
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    def open(self) -> "UssdClient":
        """Check the URL (connections are made on first use)."""
        parts = self._connect("USSD_PROVIDER", "--ussd-provider")
        if not self.service_code:
            raise UsageError("USSD_SERVICE_CODE is empty: set the service code the cic-ussd server answers")
        query = urlencode({"username": self.user, "password": self.password})
        self._path = f"{parts.path or ''}/?{query}"
        return self

    def _unreachable(self, error):
        return ServiceUnavailable(f"cannot reach the USSD service at {self.url} ({type(error).__name__}): {HINT}")

    def check(self):
        """Raise ServiceUnavailable unless the service accepts connections."""
        connection = self._pool.factory(self._pool.host, self._pool.port, timeout=min(self.timeout, 5.0))
        try:
            connection.connect()
        except OSError as e:
            raise ServiceUnavailable(f"cannot reach the USSD service at {self.url} ({type(e).__name__}): {HINT}") from None
        finally:
            connection.close()

    def body(self, phone: str, session_id: str, text: str) -> tuple:
        """(content type, body bytes) of one dial."""
        fields = {"sessionId": session_id, "serviceCode": self.service_code, "phoneNumber": phone, "text": text}
        if self.json_body:
            return "application/json", json.dumps(fields).encode()
        return "application/x-www-form-urlencoded", urlencode(fields).encode()

    def dial(self, phone: str, session_id: str, text: str = "") -> str:
        """Send one dial and return the answer text; retries connection errors and 5xx."""
        content_type, body = self.body(phone, session_id, text)
        status, reason, data = self._send("POST", self._path, body, {"Content-Type": content_type})
        text_body = data.decode("utf-8", "replace")
        if status >= 400:
            raise UssdRequestError(f"the USSD service answered HTTP {status} {reason}"
                                   f"{': ' + text_body.strip()[:80] if text_body.strip() else ''}", status)
        return text_body


def client_from_settings(settings, json_body: bool = False, timeout: float = 15.0) -> UssdClient:
    """USSD_PROVIDER, the first of USSD_SERVICE_CODE, USSD_USER, USSD_PASS (not opened yet)."""
    codes = settings.list("USSD_SERVICE_CODE")
    return UssdClient(settings.get("USSD_PROVIDER", "http://localhost:63315"), codes[0] if codes else "",
                      settings.get("USSD_USER", ""), settings.get("USSD_PASS", ""), json_body, timeout)


def new_session() -> str:
    """A fresh session id, as the 2022 seeder makes them (uuid4 hex)."""
    return uuid.uuid4().hex


def check_ussd(ctx, users):
    """verify check ``ussd``: a fresh ``text=''`` dial from the phone of each user imported through USSD
    (``user.via_ussd``) finds it registered. None when no user of the chunk was: the check does not apply.

    Dials run 16 at a time; an HTTP error or an unreachable service fails the users it concerns."""
    users = [u for u in users if getattr(u, "via_ussd", True)]
    if not users:
        return None
    with client_from_settings(ctx.settings, timeout=10.0) as client:
        client.retries = 2
        try:
            client.check()
        except ServiceUnavailable as e:
            return {u.address: str(e) for u in users}

        def ask(user):
            try:
                body = client.dial(user.tel, new_session(), "")
            except SeedError as e:
                return str(e)
            if registered(body):
                return None
            return f"the USSD service does not know {user.tel} as registered: it answers {body[:40]!r}"

        with ThreadPoolExecutor(16, thread_name_prefix="verify-ussd") as pool:
            reasons = list(pool.map(ask, users))
    return {u.address: reason for u, reason in zip(users, reasons) if reason}
