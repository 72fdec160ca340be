"""A cic-meta compatible metadata server for the devnet (stdlib HTTP, SQLite storage).

Routes (cic-meta reference, section 1): ``GET /<64 hex>[/]`` answers the document's ``data``
as plain JSON (404 if unknown), or with ``X-CIC-AUTOMERGE: client`` the whole document as an
Envelope. ``POST /<ptr>`` + ``server`` answers an Envelope with a ``digest`` and stores
nothing; ``PUT`` + ``server`` ``{"m": <envelope text>, "s": {...}}`` stores it. ``PUT`` +
``client`` stores an Envelope whose Automerge payload (see devnet.meta_automerge) has a
root ``signature.digest``. ``POST /`` stores immutable content under its sha256.

On purpose unlike the 2022 Node server: every write REPLACES the document (no key union, no
random CRDT winner; a client that PUTs its merged history still gets the merge); rewriting a
phone pointer works; Content-Length counts bytes; bad input gets a 4xx, never a 5xx; bodies
over 1 MiB get 413; signatures are kept but not checked (the 2022 server doesn't either).
"""
import argparse
import hashlib
import json
import logging
import re
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from . import process
from .meta_automerge import PayloadError, compact, envelope, load_payload
from .meta_store import Store
from .process import LoopbackHTTPServer, Service, serve

logger = logging.getLogger(__name__)

DEFAULT_PORT = 63380
MAX_BODY = 1024 * 1024
POINTER = re.compile(r"^/([0-9a-fA-F]{64})/?$")
METHODS = ("GET", "PUT", "POST", "OPTIONS")
OFFERS = 1024  # POST answers remembered for their PUT
MAX_HEADER_LINE, MAX_HEADERS = 8192, 100


class Headers(dict):
    """Request headers by lower-case name; ``get`` takes any case."""

    def get(self, name, default=None):
        return super().get(name.lower(), default)


class BadRequest(Exception):
    """Input the server refuses; ``status`` is the HTTP answer."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


# --- HTTP ---

class Handler(BaseHTTPRequestHandler):
    """One request; the store is ``self.server.store``."""

    protocol_version = "HTTP/1.1"
    server_version = "devnet-meta/1"
    timeout = 60
    consumed = False  # the request body has been read
    disable_nagle_algorithm = True

    def parse_request(self):
        """Request line and headers, parsed without the email package (~10x cheaper)."""
        self.command, self.request_version, self.close_connection = None, "HTTP/1.1", True
        self.consumed = False
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3 or words[2] not in ("HTTP/1.0", "HTTP/1.1"):
            self.send_error(400, "bad request line")
            return False
        self.command, self.path, self.request_version = words
        headers = Headers()
        while True:
            line = self.rfile.readline(MAX_HEADER_LINE + 1)
            if line in (b"\r\n", b"\n", b""):
                break
            name, colon, value = line.decode("iso-8859-1").partition(":")
            if not colon or len(line) > MAX_HEADER_LINE or len(headers) >= MAX_HEADERS:
                self.send_error(431 if colon else 400, "bad header line, or too many headers")
                return False
            headers[name.strip().lower()] = value.strip()
        self.headers = headers
        connection = headers.get("connection", "").lower()
        self.close_connection = connection == "close" or (words[2] == "HTTP/1.0" and connection != "keep-alive")
        if headers.get("expect", "").lower() == "100-continue" and words[2] == "HTTP/1.1":
            self.send_response_only(100)
            self.end_headers()
        if self.command not in METHODS:
            self.command = "OTHER"
        return True

    def log_message(self, format, *args):
        logger.debug("%s " + format, self.address_string(), *args)

    def reply(self, status, body=b"", content_type="application/json", extra=""):
        """Status line, headers and body in ONE write (two small writes cost a GIL round trip)."""
        if isinstance(body, str):
            body = body.encode()
        self.log_request(status)
        head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nServer: {self.server_version}\r\n"
                f"Date: {self.date_time_string()}\r\nContent-Type: {content_type if status < 400 else 'text/plain'}"
                f"\r\nContent-Length: {len(body)}\r\nAccess-Control-Allow-Origin: *\r\n{extra}")
        if self.close_connection:
            head += "Connection: close\r\n"
        self.wfile.write(head.encode("latin-1") + b"\r\n" + body)

    def dispatch(self, handle):
        """Run a handler returning (status, body, content type); bad input becomes its 4xx."""
        try:
            status, body, content_type = handle()
        except BadRequest as e:
            logger.info("%s %s: %d %s", self.command, self.path, e.status, e)
            status, body, content_type = e.status, str(e), "text/plain"
        except Exception:
            logger.exception("%s %s failed", self.command, self.path)
            status, body, content_type = 500, "internal error", "text/plain"
        self.skip_body()
        self.reply(status, body, content_type)

    def skip_body(self):
        """Read away a body the handler did not read, or close: the next request must parse."""
        if self.consumed:
            return
        length = self.headers.get("Content-Length", "0").strip()
        if self.headers.get("Transfer-Encoding") or not length.isdigit() or int(length) > 16 * MAX_BODY:
            self.close_connection = True
            return
        remaining = int(length)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 65536))
            if not chunk:
                self.close_connection = True
                break
            remaining -= len(chunk)
        self.consumed = True

    def pointer(self):
        match = POINTER.match(self.path)
        if not match:
            raise BadRequest("path must be /<64 hex characters>, no 0x")
        return match.group(1).lower()

    def body(self):
        if self.headers.get("Transfer-Encoding"):
            raise BadRequest("send the body with a Content-Length, not chunked", 411)
        length = self.headers.get("Content-Length", "").strip()
        if not length.isdigit():
            raise BadRequest("Content-Length required", 411)
        if int(length) > MAX_BODY:
            raise BadRequest(f"body larger than {MAX_BODY} bytes", 413)
        self.consumed = True
        return self.rfile.read(int(length))

    def json_body(self):
        try:
            return json.loads(self.body().decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise BadRequest("body is not valid UTF-8 JSON") from None

    def mode(self):
        return self.headers.get("X-CIC-AUTOMERGE")

    def do_OPTIONS(self):
        self.skip_body()
        self.reply(200, extra=f"Access-Control-Allow-Methods: {', '.join(METHODS)}\r\n"
                              "Access-Control-Allow-Headers: Content-Type, X-CIC-AUTOMERGE, Authorization\r\n")

    def do_OTHER(self):
        self.close_connection = True
        self.reply(405, "method not allowed")

    def do_GET(self):
        self.dispatch(self.get)

    def do_PUT(self):
        self.dispatch(self.put)

    def do_POST(self):
        self.dispatch(self.post)

    def get(self):
        pointer, mode = self.pointer(), self.mode()
        if mode == "server":
            raise BadRequest("GET has no server merge mode")
        row = self.server.store.get(pointer)
        if row is None:
            return 404, b"", "text/plain"
        content, mime_type = row
        if mime_type is not None:
            return 200, bytes(content), mime_type
        doc = json.loads(content)
        return 200, compact(envelope(doc) if mode == "client" else doc.get("data")), "application/json"

    def put(self):
        pointer, mode = self.pointer(), self.mode()
        if mode == "server":
            body = self.json_body()
            if not isinstance(body, dict) or not isinstance(body.get("m"), str):
                raise BadRequest('body must be {"m": <envelope JSON as a string>, "s": {...}}')
            if not isinstance(body.get("s"), dict):
                raise BadRequest('missing signature object "s"')
            root = self.server.recall(body["m"]) or _load_envelope(body["m"], 400)
            if "data" not in root:
                raise BadRequest("envelope holds no data")
            doc = {"id": pointer, "timestamp": root.get("timestamp"), "data": root["data"], "signature": body["s"]}
        elif mode == "client":
            doc = _load_envelope(self.body(), 403)
            signature = doc.get("signature")
            if not isinstance(signature, dict) or "digest" not in signature:
                raise BadRequest("envelope has no signature digest", 403)
            doc["id"] = pointer
        else:
            raise BadRequest("PUT needs X-CIC-AUTOMERGE: server or client")
        self.server.store.put(pointer, compact(doc))
        return 200, b"", "application/json"

    def post(self):
        mode = self.mode()
        if mode == "server":
            pointer, data = self.pointer(), self.json_body()
            doc = {"id": pointer, "timestamp": int(time.time()), "data": data}
            text = compact(envelope(doc))
            self.server.remember(text, doc)
            return 200, text, "application/json"
        if mode not in (None, "immutable"):
            raise BadRequest("POST needs X-CIC-AUTOMERGE: server, or no header for immutable content")
        wanted = None if self.path == "/" else self.pointer()
        content = self.body()
        digest = hashlib.sha256(content).hexdigest()
        if wanted is not None and wanted != digest:
            raise BadRequest("immutable content: the pointer must be the sha256 of the body")
        mime_type = self.headers.get("Content-Type") or "application/octet-stream"
        created = self.server.store.put(digest, content, mime_type, replace=False)
        return (201 if created else 200), digest, "text/plain"


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def _load_envelope(text, status):
    """The root map of an Envelope's payload; bad input answers ``status``."""
    try:
        env = json.loads(text, parse_constant=_no_constant)
        if not isinstance(env, dict) or not isinstance(env.get("payload"), str):
            raise BadRequest("envelope has no payload string", status)
        return load_payload(env["payload"])
    except PayloadError as e:
        raise BadRequest(str(e), status) from None
    except (ValueError, RecursionError):
        raise BadRequest("envelope is not valid JSON", status) from None


class MetaServer(LoopbackHTTPServer):
    """The HTTP server; ``serve_forever`` in a thread or via ``main``."""

    def __init__(self, address, store):
        self.store = store
        self.offers = OrderedDict()  # envelope text -> document, for the PUT that follows a POST
        self.offers_lock = threading.Lock()
        super().__init__(address, Handler)

    def remember(self, text, doc):
        """Keep the document of an envelope a POST answered, so the PUT that sends the same
        text back need not decode it again (a pure cache: nothing is stored)."""
        with self.offers_lock:
            self.offers[text] = doc
            if len(self.offers) > OFFERS:
                self.offers.popitem(last=False)

    def recall(self, text):
        """The document of a recently offered envelope text (once), else None."""
        with self.offers_lock:
            return self.offers.pop(text, None)



# --- devnet integration ---

def listen_address(settings):
    """(host, port) from META_URL: localhost binds 127.0.0.1, the port defaults to 63380."""
    return process.listen_address(settings, "META_URL", DEFAULT_PORT)


def db_path(settings, state_dir) -> Path:
    """DEVNET_META_DB, else state_dir/meta.sqlite."""
    return settings.path("DEVNET_META_DB") or Path(state_dir) / "meta.sqlite"


def build_command(settings, state_dir) -> list:
    """The command line that runs this server for the devnet."""
    host, port = listen_address(settings)
    return [sys.executable, "-m", "devnet.meta_server", "--host", host, "--port", str(port),
            "--db", str(db_path(settings, state_dir))]


def service(settings, state_dir):
    """A devnet ``Service`` for this server (started and stopped by the orchestrator)."""

    host, port = listen_address(settings)
    return Service("meta", build_command(settings, state_dir), Path(state_dir), port, host=host, port_key="META_URL")


def spawn(db, host="127.0.0.1", port=0, timeout=15.0, log=None):
    """Start the server as a child process (tests, benchmarks); returns ``(process, url)`` once
    it listens. Stop it with ``process.terminate()``."""
    command = [sys.executable, "-m", "devnet.meta_server", "--host", host, "--port", str(port), "--db", str(db)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log or subprocess.DEVNULL, text=True,
                               cwd=str(Path(__file__).resolve().parent.parent))
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if ready else ""
    if not line.startswith("listening on "):
        process.kill()
        process.wait()
        raise RuntimeError(f"meta server did not start within {timeout}s: {line.strip()!r}")
    return process, line.split()[-1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="cic-meta compatible metadata server (devnet)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("--db", required=True, help="SQLite database file")
    parser.add_argument("-v", dest="verbosity", action="count", default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbosity, 2)],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store = Store(args.db).open()
    try:
        server = MetaServer((args.host, args.port), store)
    except OSError as e:
        store.close()
        print(f"meta_server: cannot listen on {args.host}:{args.port}: {e.strerror}", file=sys.stderr)
        return 1
    return serve(server, store.close)


if __name__ == "__main__":
    sys.exit(main())
