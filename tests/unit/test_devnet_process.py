"""devnet.process.Service with small real processes (python's http.server): start, reuse,
refusal of a foreign port, start-up failures, and a stop that kills only its own process."""
import os
import signal
import socket
import subprocess
import sys

import pytest

from devnet.process import DevnetError, Service, process_alive, wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_service(state_dir, port, name="web", **kwargs):
    command = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    return Service(name, command, state_dir, port, port_key="WEB_PORT", **kwargs)


def test_start_reuse_stop(tmp_path):
    service = http_service(tmp_path, free_port())
    try:
        assert service.start(timeout=15) is True
        pid = service.pid()
        assert pid and service.running() and service.port_open()
        assert service.pidfile.read_text().split()[0] == str(pid)
        assert service.start() is False
        assert service.pid() == pid
        status = service.status()
        assert (status.running, status.pid, status.port) == (True, pid, service.port)
    finally:
        assert service.stop() is True
    assert not process_alive(pid)
    assert not service.pidfile.exists() and not service.port_open()
    assert service.stop() is False
    assert service.status().line().split()[:2] == ["web", "stopped"]


def test_a_foreign_listener_is_refused(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        service = http_service(tmp_path, port)
        with pytest.raises(DevnetError) as error:
            service.start()
    assert str(error.value) == f"port {port} is taken by another process: stop it or set WEB_PORT"
    assert not service.pidfile.exists()


def test_exit_during_start_up_shows_the_log(tmp_path):
    command = [sys.executable, "-c", "import sys; print('cannot open the database'); sys.exit(3)"]
    service = Service("db", command, tmp_path, free_port())
    with pytest.raises(DevnetError, match="db exited during start-up; log .*db.log: cannot open the database"):
        service.start(timeout=15)
    assert not service.pidfile.exists()


def test_not_ready_in_time_is_stopped(tmp_path):
    seen = []

    def never_ready():
        seen.append(service.pid())
        return False

    service = Service("slow", ["sleep", "60"], tmp_path, free_port(), ready=never_ready)
    with pytest.raises(DevnetError, match="slow was not ready within 0.5 s"):
        service.start(timeout=0.5)
    assert seen and seen[0] is not None
    assert not process_alive(seen[0])
    assert not service.pidfile.exists()


def test_missing_program(tmp_path):
    service = Service("ghost", ["/nonexistent/ghostd"], tmp_path, free_port())
    with pytest.raises(DevnetError, match="ghost: /nonexistent/ghostd not found: run make setup"):
        service.start()


def test_stale_pidfile_of_another_process_is_never_signalled(tmp_path):
    """A pidfile whose pid now belongs to someone else (other start time) is not ours."""
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        service = http_service(tmp_path, free_port())
        service.pidfile.write_text(f"{stranger.pid} 1\n")
        assert not service.running()
        assert service.stop() is False
        assert stranger.poll() is None
        assert service.start(timeout=15) is True
        assert service.pid() != stranger.pid
        service.stop()
    finally:
        stranger.kill()
        stranger.wait()


def test_a_process_that_ignores_sigterm_is_killed(tmp_path):
    port = free_port()
    code = ("import signal, socket, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            f"s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(60)")
    service = Service("stubborn", [sys.executable, "-c", code], tmp_path, port)
    service.start(timeout=15)
    pid = service.pid()
    assert service.stop(grace=0.3) is True
    assert not process_alive(pid)


def test_stop_ends_the_children_of_a_service_too(tmp_path):
    """The service leads its own session (process group); its children go with it on stop."""
    port = free_port()
    code = ("import socket, subprocess, time; subprocess.Popen(['sleep', '60']); "
            f"s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(60)")
    service = Service("parent", [sys.executable, "-c", code], tmp_path, port)
    service.start(timeout=15)
    pid = service.pid()
    assert os.getpgid(pid) == pid != os.getpgid(0)
    assert wait_for(lambda: _group_members(pid), 5)
    os.kill(pid, signal.SIGSTOP)  # make it deaf to SIGTERM so the group kill must do the work
    assert service.stop(grace=0.3) is True
    assert wait_for(lambda: not _group_members(pid), 5)


def _group_members(pgid):
    members = []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            if os.getpgid(pid) == pgid and process_alive(pid):
                members.append(pid)
        except OSError:
            pass
    return members


def test_a_worker_without_a_port_uses_its_own_readiness(tmp_path):
    marker = tmp_path / "ready"
    code = f"import pathlib, time; pathlib.Path({str(marker)!r}).touch(); time.sleep(60)"
    service = Service("worker", [sys.executable, "-c", code], tmp_path, 0, ready=marker.exists)
    try:
        assert service.start(timeout=15) is True
        assert service.status().line().split()[:3] == ["worker", "running", "no-port"]
    finally:
        assert service.stop() is True
