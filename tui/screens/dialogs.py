"""Small modal screens: the key help and the stop confirmation."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


class HelpScreen(ModalScreen[None]):
    """Every key of the screen below it, with what it does."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, bindings: list[Binding]) -> None:
        super().__init__()
        self.key_help = bindings

    def compose(self) -> ComposeResult:
        rows = "\n".join(f"[b]{b.key_display or b.key:>6}[/b]  {b.tooltip or b.description}" for b in self.key_help)
        with Vertical(id="help-box"):
            yield Label("[b]Keys[/b]")
            yield Static(rows, id="help-keys")
            yield Label("[dim]Leaving the dashboard never stops training. Esc closes this.[/dim]")


class ConfirmStop(ModalScreen[bool]):
    """Stopping saves a checkpoint and ends the run for good: ask first."""

    BINDINGS = [Binding("y", "answer(True)", "Stop"), Binding("n,escape", "answer(False)", "Cancel")]

    def __init__(self, run_name: str) -> None:
        super().__init__()
        self.run_name = run_name

    def compose(self) -> ComposeResult:
        with Grid(id="confirm-box"):
            yield Label(f"Stop {self.run_name}? It saves a checkpoint and ends the run.", id="confirm-question")
            yield Button("Stop (y)", variant="error", id="stop")
            yield Button("Cancel (n)", variant="primary", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "stop")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
