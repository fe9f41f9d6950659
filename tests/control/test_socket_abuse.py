"""The control server under hostile or broken clients: binary garbage, bracket bombs, half lines, clients
that never send or never read, and hundreds at once. Each bad client gets an error or is dropped,
memory stays bounded, and a well-formed client is answered at once throughout.

The server runs in this process on a real Unix socket, with a short idle limit; a thread stands in
for the training loop, answering each command at its next "step boundary". The process-level test
that the real loop keeps stepping through all this is in test_socket.py.
"""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from omni_runner.control.client import send_command
from omni_runner.control.protocol import MAX_MESSAGE_BYTES
from omni_runner.control.server import MAX_CLIENTS, ControlServer

pytestmark = pytest.mark.timeout(30)

IDLE_S = 0.5


@pytest.fixture
def run_dir(tmp_path: Path, request: pytest.FixtureRequest):
    """A served run folder; the clients' idle limit is IDLE_S unless the test passes its own (indirect)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    idle_s = getattr(request, "param", IDLE_S)
    server = ControlServer(run_dir, status=lambda: {"state": "running", "step": 7}, client_idle_s=idle_s)
    server.start()
    stepping = threading.Event()
    stepping.set()

    def training_loop() -> None:
        while stepping.is_set():
            try:
                server.requests.get(timeout=0.05).answer({"ok": True, "state": "paused"})
            except queue.Empty:
                pass

    threading.Thread(target=training_loop, daemon=True).start()
    yield run_dir
    stepping.clear()
    server.close({"ok": False, "error": "run already finished"})


def connect(run_dir: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(run_dir / "control.sock"))  # blocking: waits for room in the backlog
    sock.settimeout(10)
    return sock


def read_to_end(sock: socket.socket) -> bytes:
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def answered_at_once(run_dir: Path) -> bool:
    started = time.monotonic()
    return send_command(run_dir, "status", timeout=5)["step"] == 7 and time.monotonic() - started < 1.0


@pytest.mark.parametrize("payload", [
    b"\xff\xfe\x00\x9c binary \x00 garbage\n",
    b"[" * 60_000 + b"\n",  # json.loads raises RecursionError, not ValueError
    b'{"cmd": ' + b"[" * 20_000 + b"]" * 20_000 + b"}\n",
], ids=["binary", "bracket-bomb", "deep-cmd"])
def test_garbage_gets_a_malformed_request_error_and_the_connection_serves_on(run_dir, payload):
    with connect(run_dir) as sock:
        sock.sendall(payload + b'{"cmd": "status"}\n')
        first, second = (json.loads(line) for line in read_lines(sock, 2))
    assert first["error"].startswith("malformed request: send one JSON object a line")
    assert second == {"ok": True, "state": "running", "step": 7}


def read_lines(sock: socket.socket, count: int) -> list[bytes]:
    received = b""
    while received.count(b"\n") < count:
        chunk = sock.recv(65536)
        assert chunk, f"the server hung up after {received!r}"
        received += chunk
    return received.splitlines()[:count]


def test_an_oversized_line_gets_an_error_and_is_hung_up_on(run_dir):
    with connect(run_dir) as sock:
        sock.sendall(b'{"cmd": "' + b"x" * (MAX_MESSAGE_BYTES + 10))
        reply = read_to_end(sock)
    assert json.loads(reply)["error"] == f"message longer than {MAX_MESSAGE_BYTES} bytes"


def test_a_half_line_is_answered_with_an_error_once_the_client_stalls(run_dir):
    with connect(run_dir) as sock:
        sock.sendall(b'{"cmd": "sta')
        assert answered_at_once(run_dir)
        started = time.monotonic()
        reply = read_to_end(sock)
    assert json.loads(reply)["error"] == (f"no complete request within {IDLE_S:g} s: send one JSON object a line, "
                                          "ending in a newline")
    assert time.monotonic() - started < IDLE_S + 1.0


def test_a_client_that_sends_nothing_is_dropped(run_dir):
    with connect(run_dir) as sock:
        assert answered_at_once(run_dir)
        assert read_to_end(sock) == b""


def test_a_client_that_never_reads_its_replies_stops_being_served_and_is_dropped(run_dir):
    """Twenty thousand requests, no reads: the server stops reading them once its replies back up
    (they wait in the client's socket, not in the server's memory) and drops the client when stuck."""
    lines = 20_000
    with connect(run_dir) as sock:
        sock.setblocking(False)
        payload, sent, refused = b'{"cmd": "status"}\n' * lines, 0, 0
        while sent < len(payload) and refused < 10:  # until the server has read nothing for 0.1 s
            try:
                sent += sock.send(payload[sent:])
                refused = 0
            except BlockingIOError:
                refused += 1
                time.sleep(0.01)
        assert sent < len(payload)  # the server stopped reading
        assert answered_at_once(run_dir)
        sock.setblocking(True)
        sock.settimeout(10)
        replies = read_to_end(sock).count(b"\n")
    assert 0 < replies < lines  # what fitted in the socket buffers, then the hang-up


def test_two_hundred_clients_at_once_are_all_answered(run_dir):
    def one(index: int) -> dict:
        return send_command(run_dir, "pause" if index % 2 else "status", timeout=10)

    started = time.monotonic()
    with ThreadPoolExecutor(200) as pool:
        replies = list(pool.map(one, range(200)))
    assert [reply["state"] for reply in replies] == ["running", "paused"] * 100
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("run_dir", [60.0], indirect=True)  # the idle clients must outlive their connecting
def test_connections_past_the_limit_are_refused_with_an_error_and_the_rest_served(run_dir):
    idle = [connect(run_dir) for _ in range(MAX_CLIENTS)]
    try:
        with connect(run_dir) as extra:  # accepted after the idle ones: the backlog is first come, first served
            refusal = json.loads(read_to_end(extra))
        assert refusal["error"] == f"too many connections ({MAX_CLIENTS}) to the control socket; try again"
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.2)
    assert answered_at_once(run_dir)


def test_a_command_waiting_when_the_run_ends_gets_the_final_reply(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    server = ControlServer(run_dir, status=dict)
    server.start()
    with connect(run_dir) as sock:
        sock.sendall(b'{"cmd": "pause"}\n')
        while server.requests.empty():
            time.sleep(0.01)
        server.close({"ok": False, "error": "run already stopped"})
        assert json.loads(read_to_end(sock)) == {"ok": False, "error": "run already stopped"}
    assert not (run_dir / "control.sock").exists()
