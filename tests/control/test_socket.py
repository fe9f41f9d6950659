"""The control socket: commands take effect before the reply, bad input never crashes the trainer."""

from __future__ import annotations

import json
import os
import socket
import stat

import pytest

from run_watch import events_of, status_of, wait_for
from omni_runner.control.client import ControlError, send_command
from omni_runner.control.protocol import MAX_MESSAGE_BYTES


def raw_exchange(run_dir, payload: bytes) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(run_dir / "control.sock"))
        sock.sendall(payload)
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    return json.loads(reply)


def test_pause_replies_once_the_run_is_paused(harness):
    process = harness()
    reply = send_command(process.run_dir, "pause")
    assert reply["state"] == "paused"
    assert status_of(process.run_dir)["state"] == "paused"


def test_resume_replies_once_the_run_is_running_again(harness):
    process = harness()
    send_command(process.run_dir, "pause")
    assert send_command(process.run_dir, "resume")["state"] == "running"


def test_checkpoint_replies_with_the_written_path(harness):
    process = harness()
    reply = send_command(process.run_dir, "checkpoint")
    assert os.path.isdir(reply["path"])
    assert events_of(process.run_dir, "checkpoint")[-1]["reason"] == "request"


def test_checkpoint_while_paused_is_taken_at_once_and_stays_paused(harness):
    process = harness()
    send_command(process.run_dir, "pause")
    send_command(process.run_dir, "checkpoint")
    assert status_of(process.run_dir)["state"] == "paused"


def test_stop_checkpoints_and_the_trainer_exits_zero(harness):
    process = harness()
    assert send_command(process.run_dir, "stop")["state"] == "stopping"
    assert process.wait(timeout=10) == 0
    assert status_of(process.run_dir)["state"] == "stopped"


def test_status_answers_at_once(harness):
    process = harness()
    reply = send_command(process.run_dir, "status")
    assert reply["state"] == "running" and reply["step"] >= 1


def test_a_malformed_line_gets_an_error_and_the_trainer_goes_on(harness):
    process = harness()
    assert "malformed" in raw_exchange(process.run_dir, b"{not json\n")["error"]
    assert send_command(process.run_dir, "status")["ok"]


def test_an_unknown_command_gets_an_error_naming_the_known_ones(harness):
    process = harness()
    assert "known: status" in raw_exchange(process.run_dir, b'{"cmd": "explode"}\n')["error"]


def test_an_oversized_message_gets_an_error_and_the_trainer_goes_on(harness):
    process = harness()
    reply = raw_exchange(process.run_dir, b"x" * (MAX_MESSAGE_BYTES + 10))
    assert "longer than" in reply["error"]
    assert process.poll() is None and send_command(process.run_dir, "status")["ok"]


def test_the_socket_is_private_to_its_owner(harness):
    process = harness()
    assert stat.S_IMODE(os.stat(process.run_dir / "control.sock").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(process.run_dir).st_mode) == 0o700


def _connect_as_nobody(run_dir) -> str:
    """Fork, drop to uid `nobody`, try a status command; report what happened through a pipe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            os.setgid(65534)
            os.setuid(65534)
            outcome = "ok: " + json.dumps(send_command(run_dir, "status", timeout=5))
        except ControlError as exc:
            outcome = f"refused: {exc}"
        except BaseException as exc:  # noqa: BLE001 - the child must always report
            outcome = f"crashed: {exc!r}"
        os.write(write_end, outcome.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        outcome = pipe.read()
    os.waitpid(pid, 0)
    return outcome


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_another_user_cannot_reach_the_socket_through_the_private_folder(harness):
    process = harness(reachable=True)
    assert _connect_as_nobody(process.run_dir) == "refused: not your run: its folder belongs to another user"


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_another_user_cannot_open_the_0600_socket_even_in_an_open_folder(harness):
    process = harness(reachable=True)
    os.chmod(process.run_dir, 0o755)  # the folder alone would let them in; the socket mode must not
    assert _connect_as_nobody(process.run_dir) == "refused: not your run: its control socket belongs to another user"


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_another_user_is_refused_by_the_peer_credential_check_even_with_open_permissions(harness):
    process = harness(reachable=True)
    os.chmod(process.run_dir, 0o755)
    os.chmod(process.run_dir / "control.sock", 0o777)
    assert _connect_as_nobody(process.run_dir) == "refused: not your run: it belongs to another user"
    assert process.poll() is None


def test_a_finished_run_answers_run_already_finished(harness):
    process = harness(steps=3)
    assert process.wait(timeout=10) == 0
    with pytest.raises(ControlError, match="run already finished"):
        send_command(process.run_dir, "pause")


@pytest.mark.timeout(60)
def test_a_flood_of_broken_clients_never_holds_up_the_step_loop_or_a_well_formed_client(harness):
    """200 connections that send nothing or half a line, 20 of binary garbage and 5 oversized, all
    open at once: the loop keeps stepping, and status and pause are answered as usual."""
    process = harness()
    flood = []
    try:
        for index in range(225):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(process.run_dir / "control.sock"))
            if index % 9 == 1:
                sock.sendall(b'{"cmd": "pau')
            elif index % 9 == 2:
                sock.sendall(b"\x00\xff garbage \x9c\n" * 3)
            elif index == 8:
                sock.sendall(b"y" * (MAX_MESSAGE_BYTES + 10))
            flood.append(sock)
        before = status_of(process.run_dir)["step"]
        assert send_command(process.run_dir, "status", timeout=5)["ok"]
        wait_for(lambda: status_of(process.run_dir)["step"] >= before + 10, 5, "ten more steps during the flood")
        assert send_command(process.run_dir, "pause", timeout=5)["state"] == "paused"
        assert send_command(process.run_dir, "resume", timeout=5)["state"] == "running"
    finally:
        for sock in flood:
            sock.close()
    assert send_command(process.run_dir, "stop", timeout=5)["ok"] and process.wait(timeout=10) == 0
    assert b"Traceback" not in process.stdout.read()
