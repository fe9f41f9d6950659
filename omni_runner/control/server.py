"""The trainer's end of `RUN/control.sock`: accepts commands, hands them to the training loop, replies.

The socket lives in the 0700 run folder with mode 0600, and every peer's credentials are checked
(SO_PEERCRED): only the user who owns the run can steer it. Requests that change the run wait until
the training loop has acted on them at a step boundary, so a reply means "done", not "queued".
Nothing a client sends can raise into the trainer: bad input gets an error reply.

One thread serves every connection through a selector, never blocking on any of them, so a client
that connects and sends nothing, sends half a line, or never reads its replies costs a file
descriptor and a bounded buffer, not a thread, and cannot delay the others: at most `MAX_CLIENTS`
connections are open at once, each holds at most about `MAX_MESSAGE_BYTES` in and out, and one
that makes no progress for `client_idle_s` is dropped (with an error reply when it left half a line).
"""

from __future__ import annotations

import json
import os
import queue
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omni_runner.control.protocol import (
    COMMANDS,
    MAX_MESSAGE_BYTES,
    SOCKET_NAME,
    encode,
    short_socket_path,
)

_PEERCRED = struct.Struct("3i")  # pid, uid, gid
_TICK_S = 0.05  # how often replies from the training loop and idle clients are looked at
_RECV_BYTES = 4096
_CLOSE_FLUSH_S = 1.0  # how long closing waits for the last replies to go out
MAX_CLIENTS = 256
CLIENT_IDLE_S = 30.0


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


@dataclass
class _Client:
    """One connection's buffers: bytes received but not yet a line, replies not yet sent, the command in flight."""

    conn: socket.socket
    active_at: float  # the last time it sent a byte, read a byte, or was answered
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytearray = field(default_factory=bytearray)
    request: Request | None = None
    asked_at: float = 0.0
    ended: bool = False  # it closed its end, or sent something that ends the conversation
    events: int = 0  # what the selector watches it for


class ControlServer:
    """Serves the control socket in one daemon thread; the loop drains `requests` at step boundaries."""

    def __init__(self, run_dir: Path, status: Callable[[], dict[str, Any]], reply_timeout_s: float = 3600.0,
                 client_idle_s: float = CLIENT_IDLE_S) -> None:
        self.run_dir = Path(run_dir)
        self.requests: queue.Queue[Request] = queue.Queue()
        self._status = status
        self._reply_timeout_s = reply_timeout_s
        self._client_idle_s = client_idle_s
        self._closed = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._selector = selectors.DefaultSelector()
        self._clients: list[_Client] = []

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
        sock.listen(MAX_CLIENTS)  # a full backlog fails a client's connect at once (EAGAIN)
        sock.setblocking(False)
        self._sock = sock
        self._selector.register(sock, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._serve, name="omni-control", daemon=True)
        self._thread.start()

    def close(self, final_reply: dict[str, Any]) -> None:
        """Stop serving; commands still waiting get `final_reply` (e.g. "run already finished")."""
        self._closed.set()
        self.path.unlink(missing_ok=True)
        while True:
            try:
                self.requests.get_nowait().answer(final_reply)
            except queue.Empty:
                break
        if self._thread is not None:
            self._thread.join(_CLOSE_FLUSH_S + 1.0)

    # ------------------------------------------------------------ the serving thread

    def _serve(self) -> None:
        while not self._closed.is_set():
            for key, events in self._selector.select(_TICK_S):
                if key.data is None:
                    self._accept()
                    continue
                if events & selectors.EVENT_WRITE:
                    self._send(key.data)
                if events & selectors.EVENT_READ:
                    self._receive(key.data)
            now = time.monotonic()
            for client in list(self._clients):
                self._advance(client, now)
        self._finish()

    def _finish(self) -> None:
        """The run is over: waiting commands were answered by `close`; send what is owed, then hang up."""
        assert self._sock is not None
        self._selector.unregister(self._sock)
        self._sock.close()
        deadline = time.monotonic() + _CLOSE_FLUSH_S
        while self._clients and time.monotonic() < deadline:
            for client in list(self._clients):
                self._advance(client, time.monotonic())
                if client.outbox:
                    self._send(client)
                if client in self._clients and not client.outbox and client.request is None:
                    self._drop(client)
            time.sleep(0.01)
        for client in list(self._clients):
            self._drop(client)
        self._selector.close()

    def _accept(self) -> None:
        assert self._sock is not None
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:  # BlockingIOError: nobody else is waiting
                return
            conn.setblocking(False)
            client = _Client(conn, time.monotonic())
            refusal = None
            try:
                if peer_uid(conn) != os.getuid():
                    refusal = "not your run: it belongs to another user"
            except OSError:
                refusal = "cannot tell who is connecting"
            if refusal is None and len(self._clients) >= MAX_CLIENTS:
                refusal = f"too many connections ({MAX_CLIENTS}) to the control socket; try again"
            self._clients.append(client)
            if refusal is not None:
                self._reply(client, {"ok": False, "error": refusal}, last=True)
            self._watch(client)

    def _receive(self, client: _Client) -> None:
        try:
            chunk = client.conn.recv(_RECV_BYTES)
        except BlockingIOError:
            return
        except OSError:
            self._drop(client)
            return
        if not chunk:
            client.ended = True  # a half line left behind is not a request
        client.inbox += chunk
        client.active_at = time.monotonic()
        if b"\n" not in client.inbox and len(client.inbox) > MAX_MESSAGE_BYTES:
            self._reply(client, {"ok": False, "error": f"message longer than {MAX_MESSAGE_BYTES} bytes"}, last=True)

    def _send(self, client: _Client) -> None:
        try:
            sent = client.conn.send(client.outbox)
        except BlockingIOError:
            return
        except OSError:  # the client went away
            self._drop(client)
            return
        del client.outbox[:sent]
        client.active_at = time.monotonic()

    def _advance(self, client: _Client, now: float) -> None:
        """Pass on the training loop's reply, answer the next complete line, drop a client that is done or stuck."""
        if client not in self._clients:
            return
        if client.request is not None:
            if client.request.done.is_set():
                self._reply(client, client.request.reply or {"ok": False, "error": "no reply"})
            elif self._closed.is_set():  # the run ended between the check in _handle and the queue being drained
                self._reply(client, {"ok": False, "error": "run already finished"})
            elif now - client.asked_at >= self._reply_timeout_s:
                self._reply(client, {"ok": False, "error": "the trainer did not reach a step boundary within "
                                     f"{self._reply_timeout_s:g} s"})
        while client.request is None and len(client.outbox) < MAX_MESSAGE_BYTES and b"\n" in client.inbox:
            line, _, rest = bytes(client.inbox).partition(b"\n")
            client.inbox[:] = rest
            if len(line) > MAX_MESSAGE_BYTES:
                self._reply(client, {"ok": False, "error": f"message longer than {MAX_MESSAGE_BYTES} bytes"}, last=True)
                break
            outcome = self._handle(line)
            if isinstance(outcome, Request):
                client.request, client.asked_at = outcome, now
            else:
                self._reply(client, outcome)
        waiting_for_it = client.request is None
        if client.ended and waiting_for_it and not client.outbox and b"\n" not in client.inbox:
            self._drop(client)
        elif waiting_for_it and now - client.active_at > self._client_idle_s:
            if client.inbox and not client.outbox:
                self._reply(client, {"ok": False, "error": f"no complete request within {self._client_idle_s:g} s: "
                                     "send one JSON object a line, ending in a newline"}, last=True)
                self._send(client)
            self._drop(client)  # silent, or never reading its replies
        else:
            self._watch(client)

    def _reply(self, client: _Client, reply: dict[str, Any], last: bool = False) -> None:
        client.outbox += encode(reply)
        client.request = None
        client.active_at = time.monotonic()
        if last:
            client.ended = True
            client.inbox.clear()

    def _watch(self, client: _Client) -> None:
        """Read only when ready for the next line (so a flood of lines waits in the client's socket, not
        here); write while replies wait."""
        events = 0
        if not client.ended and client.request is None and not client.outbox and b"\n" not in client.inbox:
            events |= selectors.EVENT_READ
        if client.outbox:
            events |= selectors.EVENT_WRITE
        if events == client.events:
            return
        if client.events == 0:
            self._selector.register(client.conn, events, client)
        elif events == 0:
            self._selector.unregister(client.conn)
        else:
            self._selector.modify(client.conn, events, client)
        client.events = events

    def _drop(self, client: _Client) -> None:
        if client not in self._clients:  # already dropped earlier in this round
            return
        if client.events:
            self._selector.unregister(client.conn)
        client.conn.close()
        self._clients.remove(client)

    def _handle(self, line: bytes) -> dict[str, Any] | Request:
        """A reply now, or a Request the training loop answers at its next step boundary."""
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: thousands of nested brackets
            return {"ok": False, "error": "malformed request: send one JSON object a line, e.g. {\"cmd\": \"status\"}"}
        cmd = message.get("cmd") if isinstance(message, dict) else None
        if cmd not in COMMANDS:
            return {"ok": False, "error": f"unknown command {cmd!r}; known: {', '.join(COMMANDS)}"[:1000]}
        if cmd == "status":
            return {"ok": True, **self._status()}
        if self._closed.is_set():
            return {"ok": False, "error": "run already finished"}
        request = Request(cmd)
        self.requests.put(request)
        return request
