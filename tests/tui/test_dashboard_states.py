"""The dashboard renders each kind of run from its recorded events, with no trainer around."""

from __future__ import annotations

import json

from omni_tui.widgets.capabilities import CapabilityMix
from omni_tui.widgets.controller import ControllerPanel
from omni_tui.widgets.gpu import GpuPanel
from omni_tui.widgets.header import RunHeader
from omni_tui.widgets.log_tail import LogTail
from omni_tui.widgets.loss_chart import LossChart
from textual.widgets import ProgressBar

from tests.tui.conftest import dashboard_app


def log_text(app) -> str:
    return "\n".join(strip.text for strip in app.screen.query_one(LogTail).lines)


async def test_running_run_shows_progress_throughput_and_capability_mix(recorded_run):
    app = dashboard_app(recorded_run("running"))
    async with app.run_test(size=(160, 48)):
        screen = app.screen
        header = screen.query_one(RunHeader).text
        assert "tiny-omni" in header and "running" in header and "step 18/40" in header
        assert "ETA 44s" in header
        bar = screen.query_one(ProgressBar)
        assert (bar.progress, bar.total) == (18, 40)
        assert "1,834" in screen.query_one("#throughput").text
        table = screen.query_one(CapabilityMix)
        assert [row[0] for row in table._rows] == ["cot", "streaming", "tool-calling"]
        assert table._rows[2][1:3] == ("0.3", "54")
        assert len(screen.query_one(LossChart)._drawn[2]) == 1


async def test_paused_run_says_who_paused_it(recorded_run):
    app = dashboard_app(recorded_run("paused"))
    async with app.run_test():
        assert "paused: user" in app.screen.query_one(RunHeader).text
        assert app.screen.query_one(RunHeader).has_class("-paused")


async def test_cooling_run_shows_the_thermal_reason_and_a_hot_gpu_in_red(recorded_run):
    app = dashboard_app(recorded_run("cooling"))
    async with app.run_test():
        assert "cooling: thermal (GPU 0 at 86 °C, limit 83 °C)" in app.screen.query_one(RunHeader).text
        gpus = app.screen.query_one(GpuPanel).text
        assert "[bold red]86 °C[/] (limit 83, resume 75)" in gpus
        assert "hw_thermal_slowdown" in gpus


async def test_finished_run_shows_its_whole_history_and_how_it_ended(recorded_run):
    app = dashboard_app(recorded_run("finished"))
    async with app.run_test():
        header = app.screen.query_one(RunHeader).text
        assert "finished" in header and "step 40/40" in header and "ETA —" in header
        assert "ended: the trainer finished all 40 steps" in header
        assert app.screen.query_one(LossChart)._drawn[1] == 40
        assert "last checkpoint[/b] step 40 (final)" in app.screen.query_one(ControllerPanel).text
        assert "trainer exit [ok]" in log_text(app)


async def test_failed_run_explains_the_exit_and_what_to_do(recorded_run):
    app = dashboard_app(recorded_run("failed"))
    async with app.run_test():
        header = app.screen.query_one(RunHeader)
        assert "failed: nan" in header.text and header.has_class("-failed")
        log = log_text(app)
        assert "trainer exit [nan]: the loss became NaN at step 12" in log
        assert "lower training.lr" in log


async def test_no_gpu_is_said_plainly(recorded_run):
    app = dashboard_app(recorded_run("no_gpu"))
    async with app.run_test():
        panel = app.screen.query_one(GpuPanel)
        assert "No GPU" in panel.text and "NVML unavailable" in panel.text
        assert panel.has_class("-no-gpu")


async def test_every_gpu_gets_its_own_line_coloured_against_the_limits(recorded_run):
    app = dashboard_app(recorded_run("multi_gpu"))
    async with app.run_test(size=(160, 48)):
        text = app.screen.query_one(GpuPanel).text
        assert [f"GPU {i}" in text for i in range(4)] == [True] * 4
        assert "[green]71 °C[/]" in text and "[yellow]79 °C[/]" in text and "[bold red]84 °C[/]" in text


async def test_corrupt_and_partial_lines_are_skipped_counted_and_reported_once(recorded_run):
    run = recorded_run("corrupt")
    app = dashboard_app(run, follow=True)
    async with app.run_test() as pilot:
        screen = app.screen
        assert screen.view.corrupt_lines == 3
        assert screen.view.step == 14  # the partial step 15 is not read yet
        with open(run.events, "a") as handle:
            handle.write(',"total_steps":40}\n{"broken\n')
        for _ in range(20):
            await pilot.pause(0.1)
            if screen.view.step == 15:
                break
        assert screen.view.step == 15 and screen.view.corrupt_lines == 4
        warnings = [n for n in app._notifications if "unreadable" in n.message]
        assert len(warnings) == 1


async def test_a_replaced_events_file_starts_the_view_over(recorded_run):
    run = recorded_run("running")
    app = dashboard_app(run, follow=True)
    async with app.run_test() as pilot:
        run.events.write_text('{"t":1790000200,"type":"run_start","step":0,"name":"tiny-omni","total_steps":40}\n')
        for _ in range(20):
            await pilot.pause(0.1)
            if app.screen.view.step == 0:
                break
        assert app.screen.view.step == 0 and len(app.screen.view.loss_history) == 0


async def test_smoothing_key_switches_the_chart_between_smoothed_and_raw(recorded_run):
    app = dashboard_app(recorded_run("running"))
    async with app.run_test() as pilot:
        chart = app.screen.query_one(LossChart)
        assert chart.smoothing
        await pilot.press("l")
        assert not chart.smoothing and chart._drawn[0] is False


async def test_question_mark_lists_every_key_with_its_meaning(recorded_run):
    app = dashboard_app(recorded_run("running"))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        text = str(app.screen.query_one("#help-keys").render())
        for meaning in ("Pause the run", "Save a checkpoint", "asks first", "smoothed or raw", "training goes on"):
            assert meaning in text
        await pilot.press("escape")
        assert "help-box" not in [w.id for w in app.screen.query("*")]


async def test_a_new_step_rewrites_the_numbers_in_the_capability_table(recorded_run):
    run = recorded_run("running")
    app = dashboard_app(run, follow=True)
    async with app.run_test(size=(160, 48)) as pilot:
        table = app.screen.query_one(CapabilityMix)
        with open(run.events, "a") as out:
            out.write('{"t":1790000038,"type":"step","step":19,"loss":0.9,'
                      '"capability_losses":{"tool-calling":0.5,"cot":0.75,"streaming":0.875}}\n'
                      '{"t":1790000039,"type":"data","step":19,"seen":{"tool-calling":57,"cot":57,"streaming":75}}\n')
        for _ in range(50):  # new numbers are repainted within REPAINT_SECONDS
            await pilot.pause(0.1)
            if str(table.get_row_at(2)[2]) == "57":
                break
        assert table.row_count == 3
        assert [str(cell) for cell in table.get_row_at(2)] == ["tool-calling", "0.3", "57", "0.5000", "—"]


async def test_a_generation_capability_shows_its_denoising_loss_beside_its_reply_loss(recorded_run):
    run = recorded_run("running")
    with open(run.events, "a") as out:
        out.write('{"t":1790000038,"type":"step","step":19,"loss":1.9,"capability_losses":{"image-generation":4.25},'
                  '"denoising_losses":{"image-generation":0.125}}\n')
    app = dashboard_app(run)
    async with app.run_test(size=(160, 48)):
        table = app.screen.query_one(CapabilityMix)
        row = dict((r[0], r) for r in table._rows)["image-generation"]
        assert row[3:] == ("4.2500", "0.1250")


async def test_a_run_over_several_machines_shows_every_gpu_by_host(recorded_run):
    run = recorded_run("multi_gpu")
    gpu = {"name": "NVIDIA H100 80GB HBM3", "utilization_pct": 97, "throttle_reasons": []}
    with open(run.events, "a") as events:
        for machine, host, temperatures in ((0, "node-a", (70, 71)), (1, "node-b", (72, 85))):
            reading = {"t": 1790000040.0 + machine, "type": "telemetry", "step": 20, "source": "nvml", "host": host,
                       "machine_rank": machine, "gpus": [{**gpu, "index": i, "temperature_c": c} for i, c in enumerate(temperatures)]}
            events.write(json.dumps(reading) + "\n")
    app = dashboard_app(run)
    async with app.run_test(size=(160, 48)):
        text = app.screen.query_one(GpuPanel).text
        assert [f"{host} GPU {i}" in text for host in ("node-a", "node-b") for i in (0, 1)] == [True] * 4
        assert text.index("node-a GPU 1") < text.index("node-b GPU 0")
        assert "[bold red]85 °C[/]" in text
