"""The TUI's screens: the run picker, the dashboard, the help and stop-confirmation dialogs."""
