"""Steer a run from another process: `send_command(run_dir, "pause")`.

Used by `omni-run pause|resume|checkpoint|stop` and the TUI. Failures become `ControlError` with a
sentence a person can act on, never a socket traceback.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from omni_runner.control.protocol import COMMANDS, SOCKET_NAME, encode, read_line, short_socket_path
from omni_runner.run.status import read_status

ENDED_STATES = ("finished", "stopped", "failed")


class ControlError(RuntimeError):
    """A command could not be delivered or was refused; the message says why."""


def send_command(run_dir: Path, cmd: str, timeout: float = 120.0) -> dict[str, Any]:
    """Send one command and wait for the trainer to act on it; return its reply."""
    if cmd not in COMMANDS:
        raise ControlError(f"unknown command {cmd!r}; known: {', '.join(COMMANDS)}")
    run_dir = Path(run_dir)
    try:
        present = (run_dir / SOCKET_NAME).exists()
    except PermissionError:
        raise ControlError("not your run: its folder belongs to another user") from None
    if not present:
        raise ControlError(_why_nobody_listens(run_dir))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        with short_socket_path(run_dir) as address:
            sock.connect(address)
        try:
            sock.sendall(encode({"cmd": cmd}))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the trainer refused us before reading (another user's run): its reason is still readable
        line = read_line(sock, bytearray())
    except PermissionError:
        raise ControlError("not your run: its control socket belongs to another user") from None
    except (ConnectionRefusedError, FileNotFoundError):
        raise ControlError(_why_nobody_listens(run_dir)) from None
    except BlockingIOError:  # connect: the trainer's backlog of waiting connections is full
        raise ControlError("the trainer's control socket is busy (too many connections waiting); try again") from None
    except socket.timeout:
        raise ControlError(f"timed out after {timeout:g} s waiting for the trainer to {cmd}") from None
    except (OSError, ValueError) as exc:
        raise ControlError(f"lost the connection to the trainer: {exc}") from None
    finally:
        sock.close()
    if line is None:
        raise ControlError("the trainer closed the connection without replying (did it just stop?)")
    try:
        reply = json.loads(line)
    except ValueError:
        raise ControlError("the trainer sent a reply that is not JSON") from None
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error") or "refused"))
    return reply


def _why_nobody_listens(run_dir: Path) -> str:
    status = read_status(run_dir) or {}
    state = status.get("state")
    if state in ENDED_STATES:
        return f"run already {state}" if state != "failed" else "run already ended (failed)"
    return f"no trainer is listening (last state: {state or 'unknown'})"
