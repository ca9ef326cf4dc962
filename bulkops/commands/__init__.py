"""The commands: the wiring on top, the only layer that knows every other room."""
