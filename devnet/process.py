"""One devnet service process: pidfile, log file, readiness wait and a stop that kills only its own.

Every devnet service (anvil, redis, the engine worker, the meta and ussd servers) is a
``Service``. Its pidfile ``<state_dir>/<name>.pid`` holds the pid and the process start time,
so a pid recycled by the kernel is never mistaken for ours. The process runs detached in its
own session (it outlives ``python -m devnet up``) and logs to ``<state_dir>/<name>.log``.
"""
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from cic_seed.errors import UsageError

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 6


class DevnetError(UsageError):
    """The devnet cannot start or stop as asked; the message says what to do."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    host: str
    port: int
    pid: int | None

    def line(self) -> str:
        """``anvil      running  127.0.0.1:63545  pid 1234``"""
        state = "running" if self.running else "stopped"
        pid = f"pid {self.pid}" if self.pid else "-"
        where = f"{self.host}:{self.port}" if self.port else "no-port"
        return f"{self.name:<10} {state:<8} {where}  {pid}"


def port_answers(host: str, port: int, timeout: float = 0.25) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _proc_stat(pid: int):
    """(state letter, start time in clock ticks) of a pid from /proc, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return fields[0], int(fields[19])


def _reap(pid: int) -> None:
    """Collect the exit status if the pid is our own child, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def process_alive(pid: int, started: int | None = None) -> bool:
    """True when ``pid`` runs and, if given, started at ``started`` ticks.

    A zombie counts as gone, unless it is a thread-group leader whose other threads are
    still exiting: until they are done the process still holds its files and ports.
    """
    _reap(pid)
    stat = _proc_stat(pid)
    if stat is None:
        return False
    state, start_ticks = stat
    if started is not None and start_ticks != started:
        return False
    return state not in ("Z", "X") or _threads(pid) > 1


def wait_for(check, timeout: float, first_delay: float = 0.01, max_delay: float = 0.25) -> bool:
    """Poll ``check()`` with growing delays until it is true (True) or the deadline passes (False)."""
    deadline = time.monotonic() + timeout
    delay = first_delay
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, max_delay)


class Service:
    """A detached process that serves on host:port, tracked by a pidfile in state_dir.

    ``port_key`` names the setting that moves the port (shown when the port is taken);
    ``ready`` is a no-argument callable, by default "the TCP port accepts". A process that
    listens on no port (a worker) passes ``port=0`` and its own ``ready``.
    """

    def __init__(self, name: str, command: list, state_dir: Path, port: int, host: str = "127.0.0.1",
                 env: dict | None = None, ready=None, port_key: str | None = None):
        self.name = name
        self.command = [str(part) for part in command]
        self.state_dir = Path(state_dir)
        self.port = int(port)
        self.host = host
        self.env = dict(env) if env else None
        self.ready = ready or self.port_open
        self.port_key = port_key

    @property
    def pidfile(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    def port_open(self) -> bool:
        """True when the service's port accepts TCP connections (never for port 0)."""
        return self.port > 0 and port_answers(self.host, self.port)

    def _read_pidfile(self):
        try:
            pid_text, start_text = self.pidfile.read_text().split()
            return int(pid_text), int(start_text)
        except (FileNotFoundError, ValueError):
            return None

    def pid(self) -> int | None:
        """Pid of our own live process, or None (a stale pidfile counts as None)."""
        record = self._read_pidfile()
        if record is not None and process_alive(*record):
            return record[0]
        return None

    def running(self) -> bool:
        """True when our process from the pidfile is alive."""
        return self.pid() is not None

    def status(self) -> ServiceStatus:
        """Running or not, where, and which pid."""
        pid = self.pid()
        return ServiceStatus(self.name, pid is not None, self.host, self.port, pid)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the service's log on one line (for error messages)."""
        try:
            text = self.logfile.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
        return " | ".join(tail) if tail else "(empty log)"

    def _spawn(self) -> int:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(self.logfile), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ]
        try:
            pid = os.posix_spawnp(self.command[0], self.command, env, file_actions=actions, setsid=True)
        except FileNotFoundError:
            raise DevnetError(f"{self.name}: {self.command[0]} not found: run make setup") from None
        stat = _proc_stat(pid)
        started = stat[1] if stat else 0
        tmp = self.pidfile.with_name(f".{self.pidfile.name}.tmp")
        tmp.write_text(f"{pid} {started}\n")
        os.replace(tmp, self.pidfile)
        return pid

    def start(self, timeout: float = 30.0) -> bool:
        """Start the service and wait until it is ready; True if started, False if it already ran.

        Raises DevnetError when the port is taken by a process that is not ours, when the
        process exits during start-up, or when it is not ready within ``timeout`` seconds.
        """
        record = self._read_pidfile()
        ours = record is not None and process_alive(*record)
        if ours:
            if not wait_for(self.ready, timeout):
                raise DevnetError(f"{self.name} (pid {record[0]}) runs but is not ready on port {self.port}: "
                                  f"stop it with python -m devnet down; log: {self.log_tail()}")
            return False
        if record is not None and self.port_open():
            wait_for(lambda: not self.port_open(), 2.0)  # our previous process may still be closing it
        if self.port_open():
            hint = f"set {self.port_key}" if self.port_key else "choose another port"
            raise DevnetError(f"port {self.port} is taken by another process: stop it or {hint}")
        self.pidfile.unlink(missing_ok=True)
        pid = self._spawn()
        log.info("%s: started pid %s on %s:%s", self.name, pid, self.host, self.port)
        exited = []

        def ready_or_exited():
            if not process_alive(pid):
                exited.append(True)
                return True
            return self.ready()

        if not wait_for(ready_or_exited, timeout) or exited:
            why = "exited during start-up" if exited else f"was not ready within {timeout:g} s"
            self.stop()
            raise DevnetError(f"{self.name} {why}; log {self.logfile}: {self.log_tail()}")
        return True

    def stop(self, grace: float = 5.0) -> bool:
        """Stop our process (SIGTERM, SIGKILL after ``grace`` s) and remove the pidfile.

        Only the pid recorded in the pidfile (and its own process group) is signalled.
        Returns True when a running process was stopped.
        """
        record = self._read_pidfile()
        if record is None:
            return False
        pid, started = record
        stopped = False
        if process_alive(pid, started):
            log.info("%s: stopping pid %s", self.name, pid)
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if not wait_for(lambda: not process_alive(pid, started), grace):
                log.warning("%s: pid %s ignored SIGTERM for %s s, killing it", self.name, pid, grace)
                self._kill_group(pid)
                wait_for(lambda: not process_alive(pid, started), 5.0)
            stopped = True
            self._kill_group(pid)  # leftovers of our group; the pgid stays reserved while they live
            wait_for(lambda: not self.port_open(), 2.0)
        self.pidfile.unlink(missing_ok=True)
        return stopped

    @staticmethod
    def _kill_group(pid: int) -> None:
        """SIGKILL what is left of the process group our process led (it was started with setsid)."""
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def listen_address(settings, key: str, default_port: int):
    """(host, port) an HTTP service binds for the URL in setting ``key``: localhost binds 127.0.0.1,
    the port defaults to ``default_port``."""
    url = urlsplit(settings.get(key, f"http://localhost:{default_port}"))
    host = url.hostname or "127.0.0.1"
    return ("127.0.0.1" if host == "localhost" else host), (url.port or default_port)


def service_env(settings, state_dir, keys) -> dict:
    """A service's environment: the state dir and the settings ``keys`` it must see as the devnet
    does (they may come from -c DIR or flags)."""
    env = {"DEVNET_STATE_DIR": str(Path(state_dir).resolve())}
    env.update({key: str(settings.get(key)) for key in keys if settings.get(key) is not None})
    return env


class LoopbackHTTPServer(ThreadingHTTPServer):
    """The devnet's HTTP services: a thread per request, a deep accept queue, dropped connections
    logged at debug level (clients under load hang up), and the ``url`` they answer on."""

    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        log.debug("connection from %s dropped", client_address, exc_info=True)

    @property
    def url(self):
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def serve(server, *cleanups) -> int:
    """Run an HTTP server (in the service's own process) until SIGTERM or Ctrl-C, then close it and
    run ``cleanups``; the "listening on" line tells the devnet log where it answers."""
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"listening on {server.url}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        for cleanup in cleanups:
            cleanup()
    return 0

