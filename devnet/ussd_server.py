"""A cic-ussd compatible USSD endpoint for the devnet (stdlib threaded HTTP, SQLite phone table).

``POST /`` (query string ignored) with a form-encoded body as current cic-ussd takes it, or the
2021 JSON body; ``GET /health-check`` answers ``healthy``; anything else is 405. The menus and
the rejections are in ``devnet.ussd_menu``.

A new account is created through the devnet's cic-eth engine over the real celery protocol
(``CicEthApi.create_account(register=True)`` with a redis callback), one per phone: the phone
table holds the chain's task ids before anything is sent, so a restarted server sends the same
ids again (the engine deduplicates ``create`` by root id) or reads the address from the result
backend. Once the address is known it writes the ``ussd``/``individual`` custom tags and then the
phone pointer (the address as cic-ussd stores it: lower-case hex without 0x, a JSON string) to
cic-meta with server-merge writes; a write that fails is retried with backoff.

Run it with ``python -m devnet.ussd_server --host H --port P --db FILE``; the backends come from
the settings (CELERY_*, REDIS_*, CIC_CHAIN_SPEC, META_URL, USSD_SERVICE_CODE, PGP_*).
"""
import argparse
import contextlib
import logging
import queue
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

from cic_seed.chainspec import ChainSpec
from cic_seed.errors import SeedError

from . import process
from .process import LoopbackHTTPServer, Service, serve
from .ussd_menu import MAX_BODY, Menu, PhoneTable, Rejected, parse_dial

log = logging.getLogger(__name__)

NAME = "ussd"
DEFAULT_PORT = 63315
RESEND_AFTER = 30.0  # seconds without a callback before the result backend is asked, then resent
TAGS = ["ussd", "individual"]
SERVER_KEYS = ("CELERY_BROKER_URL", "CELERY_RESULT_URL", "CELERY_QUEUE", "CIC_CHAIN_SPEC", "REDIS_HOST",
               "REDIS_PORT", "REDIS_DB", "REDIS_HOST_CALLBACK", "REDIS_PORT_CALLBACK", "META_URL",
               "USSD_SERVICE_CODE", "PGP_SIGN", "PGP_KEYS_PATH", "PGP_PRIVATE_KEY_FILE", "PGP_PASSPHRASE")


class Handler(BaseHTTPRequestHandler):
    """One request; the menu is ``self.server.menu``."""

    protocol_version = "HTTP/1.1"
    server_version = "devnet-ussd/1"
    timeout = 60
    disable_nagle_algorithm = True

    def log_message(self, format, *args):
        pass  # the request line may carry ?username=&password=: requests are logged by reply() without it

    def reply(self, status, body="", reason=None):
        """Status line, headers and body in one write (two small writes wait for a delayed ACK)."""
        data = body.encode("utf-8")
        log.debug("%s %s -> %d", self.command, urlsplit(self.path).path, status)
        close = "Connection: close\r\n" if self.close_connection else ""
        head = (f"HTTP/1.1 {status} {reason or HTTPStatus(status).phrase}\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(data)}\r\n{close}\r\n")
        self.wfile.write(head.encode("latin-1") + data)

    def refuse(self):
        self.close_connection = True  # a body we did not read must not be parsed as the next request
        self.reply(405, "Play by the rules", "Play by the rules")

    def do_GET(self):
        if urlsplit(self.path).path == "/health-check":
            self.reply(200, "healthy")
        else:
            self.refuse()

    def do_POST(self):
        if urlsplit(self.path).path != "/":
            return self.refuse()
        length = self.headers.get("Content-Length", "").strip()
        if not length.isdigit() or int(length) > MAX_BODY:
            self.close_connection = True
            return self.reply(400, "Size matters", "Size matters")
        body = self.rfile.read(int(length))
        try:
            status, text = self.server.menu.answer(parse_dial(self.headers.get("Content-Type"), body))
        except Rejected as e:
            return self.reply(e.status, e.body, e.reason)
        except Exception:  # noqa: BLE001 - a bug or a broken database: say so, keep serving
            log.exception("POST / failed")
            return self.reply(500, "internal error")
        self.reply(status, text)

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = refuse


class UssdServer(LoopbackHTTPServer):
    def __init__(self, address, menu):
        self.menu = menu
        super().__init__(address, Handler)


class Creator:
    """Turns claimed phones into accounts: one thread talks to cic-eth, a small pool writes to cic-meta.
    ``submit`` is the Menu's ``create``; ``start``/``stop`` run the thread."""

    def __init__(self, settings, table: PhoneTable, resend_after: float = RESEND_AFTER):
        self.settings = settings
        self.table = table
        self.chain_spec = ChainSpec.parse(settings.get("CIC_CHAIN_SPEC"))
        self.resend_after = resend_after
        self._new = queue.Queue()
        self._written = queue.Queue()  # (account, address, error or None) from the meta writers
        self._stop = threading.Event()
        self._thread = None
        self._in_flight = {}  # root id -> [account, sent at, sends]
        self._meta_due = {}  # phone -> (account, address, due, tries)

    def submit(self, account):
        """Have the account created (called once per new phone, after its row is stored)."""
        self._new.put(account)

    def start(self):
        self._thread = threading.Thread(target=self._run, name="ussd-creator", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self):
        delay = 0.5
        while not self._stop.is_set():
            try:
                with contextlib.ExitStack() as stack:
                    clients = self._connect(stack)
                    delay = 0.5
                    self._serve(*clients)
            except SeedError as e:
                log.error("account creation paused: %s; retrying in %.1f s", e, delay)
            except Exception:  # noqa: BLE001 - the thread must outlive a redis, celery or database hiccup
                log.exception("account creation paused; retrying in %.1f s", delay)
            self._stop.wait(delay)
            delay = min(delay * 2, 10.0)

    def _connect(self, stack):
        from cic_seed.celery_client import api_from_settings
        from cic_seed.meta_client import MetaClient
        from cic_seed.pgp import signer_from_settings
        from cic_seed.redis_callback import listener_from_settings

        api = api_from_settings(self.settings)
        api.check()
        listener = stack.enter_context(listener_from_settings(self.settings))
        signer = signer_from_settings(self.settings)
        if signer is not None:
            signer = stack.enter_context(signer)
        meta = stack.enter_context(MetaClient(self.settings.get("META_URL"), workers=8, retries=3, signer=signer))
        pool = stack.enter_context(ThreadPoolExecutor(8, thread_name_prefix="ussd-meta"))
        return api, listener, meta, pool

    def _serve(self, api, listener, meta, pool):
        for account in self.table.unfinished():  # what an earlier run (or connection) left
            if account.address is None:
                self._in_flight[account.root_id] = [account, 0.0, 1]  # overdue: ask, then resend
            else:
                self._meta_due[account.phone] = (account, account.address, 0.0, 0)
        while not self._stop.is_set():
            while True:
                try:
                    account = self._new.get_nowait()
                except queue.Empty:
                    break
                self._send(api, listener, account, 0)
            for reply in listener.poll(timeout=0.05):
                listener.pop(reply.root_id)
                entry = self._in_flight.pop(reply.root_id, None)
                if entry is None:
                    continue
                if reply.ok and reply.address:
                    self._created(entry[0], reply.result)
                else:
                    log.warning("cic-eth answered %s for %s (root %s); asking again later",
                                reply.status, entry[0].phone, reply.root_id)
                    self._in_flight[reply.root_id] = entry
            now = time.monotonic()
            for root_id, (account, sent_at, sends) in list(self._in_flight.items()):
                if now - sent_at > self.resend_after * 2 ** min(sends - 1, 4):
                    address = api.created_address(account.create_id)
                    if address:
                        del self._in_flight[root_id]
                        self._created(account, address)
                    else:
                        log.info("no account yet for %s (root %s): sending again", account.phone, root_id)
                        self._send(api, listener, account, sends)
            self._write_meta(meta, pool)

    def _send(self, api, listener, account, sends):
        api.create_account(self.chain_spec, listener.param, register=True, root_id=account.root_id,
                           create_id=account.create_id)
        self._in_flight[account.root_id] = [account, time.monotonic(), sends + 1]

    def _created(self, account, result):
        from cic_seed.pointers import address_bytes

        address = address_bytes(result).hex()  # as cic-eth 2022 returns it and cic-ussd stores it
        self.table.set_status(account.phone, "created", address)
        self._meta_due[account.phone] = (account, address, 0.0, 0)

    def _write_meta(self, meta, pool):
        while True:
            try:
                account, address, error = self._written.get_nowait()
            except queue.Empty:
                break
            if error is None:
                self._meta_due.pop(account.phone, None)
                self.table.set_status(account.phone, "ready")
                continue
            tries = self._meta_due.get(account.phone, (None, None, 0, 0))[3] + 1
            delay = min(0.5 * 2 ** tries, 30.0)
            log.log(logging.WARNING if tries == 1 else logging.DEBUG, "cannot write the phone pointer of %s yet "
                    "(%s); retrying in %.1f s", account.phone, error, delay)
            self._meta_due[account.phone] = (account, address, time.monotonic() + delay, tries)
        now = time.monotonic()
        for phone, (account, address, due, tries) in list(self._meta_due.items()):
            if due is not None and due <= now:
                self._meta_due[phone] = (account, address, None, tries)  # in progress
                pool.submit(self._put, meta, account, address)

    def _put(self, meta, account, address):
        from cic_seed.pointers import custom_pointer, phone_pointer

        try:
            meta.put(custom_pointer(address), {"tags": TAGS}, what="custom tags")
            meta.put(phone_pointer(account.phone), address, what="phone pointer")  # last: the sign of completion
        except Exception as e:  # noqa: BLE001 - reported to the creator thread, which retries
            self._written.put((account, address, e))
        else:
            self._written.put((account, address, None))


# --- devnet integration ---

def listen_address(settings):
    """(host, port) from USSD_PROVIDER: localhost binds 127.0.0.1, the port defaults to 63315."""
    return process.listen_address(settings, "USSD_PROVIDER", DEFAULT_PORT)


def db_path(state_dir) -> Path:
    """The phone table's SQLite file in the state dir."""
    return Path(state_dir) / "ussd.sqlite"


def build_command(settings, state_dir, python: str = sys.executable) -> list:
    """The command line that runs this server for the devnet (pure)."""
    host, port = listen_address(settings)
    return [python, "-m", "devnet.ussd_server", "--host", host, "--port", str(port), "--db", str(db_path(state_dir))]


def server_env(settings, state_dir) -> dict:
    """The state dir and the settings the server must share with the scripts (they may come from -c DIR)."""
    return process.service_env(settings, state_dir, SERVER_KEYS)


def service(settings, state_dir):
    """A devnet ``Service`` for this server (nothing is started here)."""

    host, port = listen_address(settings)
    return Service(NAME, build_command(settings, state_dir), Path(state_dir), port, host=host,
                   env=server_env(settings, state_dir), port_key="USSD_PROVIDER")


def main(argv=None) -> int:
    from cic_seed.config import load_settings

    parser = argparse.ArgumentParser(description="cic-ussd compatible USSD endpoint (devnet)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("--db", required=True, help="SQLite file of the phone table")
    parser.add_argument("-v", dest="verbosity", action="count", default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbosity + 1, 2)],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("celery", "kombu", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        settings = load_settings()
        table = PhoneTable(args.db).open()
        creator = Creator(settings, table)
        codes = settings.list("USSD_SERVICE_CODE")
        if not codes:
            raise SeedError("USSD_SERVICE_CODE is empty: set at least one service code, e.g. *483*46#")
        server = UssdServer((args.host, args.port), Menu(table, creator.submit, codes))
    except (SeedError, OSError) as e:
        print(f"ussd_server: cannot start: {e}", file=sys.stderr)
        return 1
    creator.start()
    return serve(server, creator.stop, table.close)


if __name__ == "__main__":
    sys.exit(main())
