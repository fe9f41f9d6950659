"""The trainer's end of `RUN/control.sock`: accepts commands, hands them to the training loop, replies.

The socket lives in the 0700 run folder with mode 0600, and every peer's credentials are checked
(SO_PEERCRED): only the user who owns the run can steer it. Requests that change the run wait until
the training loop has acted on them at a step boundary, so a reply means "done", not "queued".
Nothing a client sends can raise into the trainer: bad input gets an error reply.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omni_runner.control.protocol import COMMANDS, SOCKET_NAME, encode, read_line, short_socket_path

_PEERCRED = struct.Struct("3i")  # pid, uid, gid
_CLOSED_CHECK_S = 0.5


@dataclass
class Request:
    """A command waiting for the training loop; `reply` is filled in and `done` set when it acted."""

    cmd: str
    done: threading.Event = field(default_factory=threading.Event)
    reply: dict[str, Any] | None = None

    def answer(self, reply: dict[str, Any]) -> None:
        self.reply = reply
        self.done.set()


def peer_uid(conn: socket.socket) -> int:
    _, uid, _ = _PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return uid


class ControlServer:
    """Serves the control socket in daemon threads; the loop drains `requests` at step boundaries."""

    def __init__(self, run_dir: Path, status: Callable[[], dict[str, Any]], reply_timeout_s: float = 3600.0) -> None:
        self.run_dir = Path(run_dir)
        self.requests: queue.Queue[Request] = queue.Queue()
        self._status = status
        self._reply_timeout_s = reply_timeout_s
        self._closed = threading.Event()
        self._sock: socket.socket | None = None

    @property
    def path(self) -> Path:
        return self.run_dir / SOCKET_NAME

    def start(self) -> None:
        self.path.unlink(missing_ok=True)  # a stale socket of an earlier trainer of this run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is born 0600, no window where others could connect
        try:
            with short_socket_path(self.run_dir) as address:
                sock.bind(address)
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        sock.listen(16)
        self._sock = sock
        threading.Thread(target=self._accept_loop, name="omni-control", daemon=True).start()

    def close(self, final_reply: dict[str, Any]) -> None:
        """Stop serving; commands still waiting get `final_reply` (e.g. "run already finished")."""
        self._closed.set()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
        self.path.unlink(missing_ok=True)
        while True:
            try:
                self.requests.get_nowait().answer(final_reply)
            except queue.Empty:
                break

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name="omni-control-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                if peer_uid(conn) != os.getuid():
                    conn.sendall(encode({"ok": False, "error": "not your run: it belongs to another user"}))
                    return
                buffer = bytearray()
                while True:
                    try:
                        line = read_line(conn, buffer)
                    except ValueError as exc:
                        conn.sendall(encode({"ok": False, "error": str(exc)}))
                        return
                    if line is None:
                        return
                    conn.sendall(encode(self._handle(line)))
            except OSError:
                return  # the client went away

    def _handle(self, line: bytes) -> dict[str, Any]:
        try:
            message = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "malformed request: send one JSON object a line, e.g. {\"cmd\": \"status\"}"}
        cmd = message.get("cmd") if isinstance(message, dict) else None
        if cmd not in COMMANDS:
            return {"ok": False, "error": f"unknown command {cmd!r}; known: {', '.join(COMMANDS)}"}
        if cmd == "status":
            return {"ok": True, **self._status()}
        if self._closed.is_set():
            return {"ok": False, "error": "run already finished"}
        request = Request(cmd)
        self.requests.put(request)
        waited = 0.0
        while not request.done.wait(_CLOSED_CHECK_S):
            waited += _CLOSED_CHECK_S
            if self._closed.is_set():  # the run ended between our check above and the queue being drained
                return {"ok": False, "error": "run already finished"}
            if waited >= self._reply_timeout_s:
                return {"ok": False, "error": f"the trainer did not reach a step boundary within {self._reply_timeout_s:g} s"}
        return request.reply or {"ok": False, "error": "no reply"}
