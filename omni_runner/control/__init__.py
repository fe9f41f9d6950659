"""Steering a run: the state machine, signals, the control socket, cooldowns and GPU telemetry.

`omni_runner.control.client` is what other processes use (the CLI, the TUI); the trainer builds a
`omni_runner.control.controller.Controller`. Nothing here imports torch.
"""
