"""The control socket's wire format, shared by the trainer's server and every client.

One JSON object a line, at most `MAX_MESSAGE_BYTES`: requests `{"cmd": ...}`, replies
`{"ok": true, ...}` or `{"ok": false, "error": "..."}`. Unix socket paths are limited to about
108 bytes, so long run folders are reached through `/proc/self/fd/N/control.sock`.
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SOCKET_NAME = "control.sock"
COMMANDS = ("status", "pause", "resume", "toggle", "checkpoint", "stop")
MAX_MESSAGE_BYTES = 64 * 1024
_MAX_SUN_PATH = 100


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, default=str) + "\n").encode()


@contextmanager
def short_socket_path(run_dir: Path) -> Iterator[str]:
    """A path to RUN/control.sock that fits in sockaddr_un, valid inside the `with` block."""
    path = str(Path(run_dir) / SOCKET_NAME)
    if len(path.encode()) <= _MAX_SUN_PATH:
        yield path
        return
    fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{SOCKET_NAME}"
    finally:
        os.close(fd)


def read_line(conn: socket.socket, buffer: bytearray) -> bytes | None:
    """The next line from `conn` (without the newline); None at EOF; ValueError when over the limit."""
    while b"\n" not in buffer:
        if len(buffer) > MAX_MESSAGE_BYTES:
            raise ValueError(f"message longer than {MAX_MESSAGE_BYTES} bytes")
        chunk = conn.recv(65536)
        if not chunk:
            return None
        buffer.extend(chunk)
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    if len(line) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message longer than {MAX_MESSAGE_BYTES} bytes")
    return line
