"""The controller's state machine, as pure logic: precedence, schedules and thermal hysteresis."""

from __future__ import annotations

from omni_runner.control.state import ControllerSettings, GpuTemperature, StateMachine

QUIET = ControllerSettings(cooldown_every_steps=0, checkpoint_every_steps=0)


def hot(*celsius: float) -> list[GpuTemperature]:
    return [GpuTemperature(i, c) for i, c in enumerate(celsius)]


def test_runs_when_nothing_asks_otherwise():
    assert StateMachine(QUIET).target(1, 0.0).state == "running"


def test_toggle_pauses_then_resumes():
    machine = StateMachine(QUIET)
    machine.toggle()
    assert machine.target(1, 0.0).state == "paused"
    machine.toggle()
    assert machine.target(1, 0.0).state == "running"


def test_stop_wins_over_a_pause():
    machine = StateMachine(QUIET)
    machine.pause()
    machine.stop()
    assert machine.target(1, 0.0).state == "stopping"


def test_scheduled_cooldown_starts_at_the_configured_step_and_lasts_its_seconds():
    machine = StateMachine(ControllerSettings(cooldown_every_steps=5, cooldown_seconds=60, checkpoint_every_steps=0))
    assert machine.target(4, 0.0).state == "running"
    target = machine.target(5, 100.0)
    assert (target.state, target.reason) == ("cooling", "scheduled")
    assert machine.target(5, 159.0).state == "cooling"
    assert machine.target(5, 160.0).state == "running"


def test_a_resumed_run_does_not_cool_down_again_at_its_start_step():
    machine = StateMachine(ControllerSettings(cooldown_every_steps=5, cooldown_seconds=60), start_step=5)
    assert machine.target(5, 0.0).state == "running"


def test_a_user_pause_during_a_cooldown_stays_paused_after_it():
    machine = StateMachine(ControllerSettings(cooldown_every_steps=5, cooldown_seconds=60, checkpoint_every_steps=0))
    machine.target(5, 0.0)
    machine.pause()
    assert machine.target(5, 10.0).state == "paused"
    assert machine.target(5, 100.0).state == "paused"


def test_resuming_during_an_unfinished_cooldown_returns_to_cooling():
    machine = StateMachine(ControllerSettings(cooldown_every_steps=5, cooldown_seconds=60, checkpoint_every_steps=0))
    machine.pause()
    machine.target(5, 0.0)
    machine.resume()
    assert machine.target(5, 30.0).state == "cooling"
    assert machine.target(5, 61.0).state == "running"


def test_any_gpu_over_the_limit_cools_with_a_thermal_reason_naming_it():
    target = StateMachine(QUIET).target(1, 0.0, hot(70, 88))
    assert (target.state, target.reason) == ("cooling", "thermal")
    assert target.detail == "GPU 1 at 88 °C, limit 83 °C"


def test_thermal_cooling_holds_until_every_gpu_is_below_the_resume_threshold():
    machine = StateMachine(QUIET)
    machine.target(1, 0.0, hot(88))
    assert machine.target(1, 1.0, hot(80)).state == "cooling"  # below the limit, above resume: hysteresis
    assert machine.target(1, 2.0, hot(74, 76)).state == "cooling"
    assert machine.target(1, 3.0, hot(70, 74)).state == "running"


def test_between_resume_threshold_and_limit_does_not_start_cooling():
    assert StateMachine(QUIET).target(1, 0.0, hot(80)).state == "running"


def test_thermal_max_wait_with_continue_trains_on_until_the_card_cools():
    machine = StateMachine(ControllerSettings(cooldown_every_steps=0, max_wait_s=100, on_timeout="continue"))
    machine.target(1, 0.0, hot(90))
    timed_out = machine.target(1, 100.0, hot(90))
    assert (timed_out.state, timed_out.reason) == ("running", "thermal_timeout")
    assert "after 100 s" in timed_out.detail
    assert machine.target(2, 101.0, hot(90)).state == "running"
    machine.target(3, 102.0, hot(70))
    assert machine.target(4, 103.0, hot(90)).state == "cooling"


def test_thermal_max_wait_with_stop_stops_the_run():
    machine = StateMachine(ControllerSettings(cooldown_every_steps=0, max_wait_s=100, on_timeout="stop"))
    machine.target(1, 0.0, hot(90))
    target = machine.target(1, 100.0, hot(90))
    assert (target.state, target.reason) == ("stopping", "thermal")


def test_thermal_disabled_ignores_heat():
    machine = StateMachine(ControllerSettings(cooldown_every_steps=0, thermal_enabled=False))
    assert machine.target(1, 0.0, hot(99)).state == "running"


def test_scheduled_checkpoints_fall_on_multiples_of_every_steps():
    machine = StateMachine(ControllerSettings(checkpoint_every_steps=3))
    assert [s for s in range(0, 10) if machine.checkpoint_due(s)] == [3, 6, 9]


def test_settings_come_from_the_recipe_section():
    settings = ControllerSettings.from_recipe({"cooldown": {"every_steps": 7, "seconds": 2},
                                               "thermal": {"limit_c": 80, "resume_c": 70}})
    assert (settings.cooldown_every_steps, settings.limit_c, settings.resume_c) == (7, 80.0, 70.0)


def test_a_checkpoint_that_could_not_be_written_pauses_with_the_reason_until_resumed():
    machine = StateMachine(QUIET)
    machine.checkpoint_failed("No space left on device")
    target = machine.target(4, 0.0)
    assert (target.state, target.reason, target.detail) == ("paused", "checkpoint_failed", "No space left on device")
    machine.resume()
    assert machine.target(4, 0.0).state == "running"


def test_a_stop_whose_checkpoint_fails_becomes_a_pause():
    machine = StateMachine(QUIET)
    machine.stop()
    machine.checkpoint_failed("No space left on device")
    assert machine.target(4, 0.0).state == "paused"


def test_on_error_stop_ends_the_run_when_a_checkpoint_cannot_be_written():
    machine = StateMachine(ControllerSettings(cooldown_every_steps=0, checkpoint_every_steps=0, on_checkpoint_error="stop"))
    machine.checkpoint_failed("Disk quota exceeded")
    target = machine.target(4, 0.0)
    assert (target.state, target.reason, target.detail) == ("stopping", "checkpoint_failed", "Disk quota exceeded")
