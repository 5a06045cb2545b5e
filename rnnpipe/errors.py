"""Errors the core raises with structured fields, so that each face can word
them in its own vocabulary: `--max-time` on the command line and in the
magics, `max_time=` in Python.

This module imports nothing, so the command line starts fast."""

from __future__ import annotations


def _shown(value):
    """A value as a message shows it: 1e+30 and 0.5 as %g, text quoted."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return repr(value)
    return str(value)


class SettingError(ValueError):
    """A setting's value is refused.

    name: the setting as Python spells it (a keyword argument, a Config
      field: "max_time", "top_k", "unit");
    value: the value given;
    template: the message, with {name} and {value} to fill in;
    others: the other settings the message names, each written {setting} in
      the template ("{name} takes no {temperature}"), so that a face words
      them as it words name.

    str(e) is the message in Python's words ("max_time must be ..."); a face
    calls worded(flag) for its own ("--max-time must be ...")."""

    def __init__(self, name, value, template="{name} must be ..., not {value}", others=()):
        self.name, self.value, self.template, self.others = name, value, template, tuple(others)
        super().__init__(self.worded(name))

    def worded(self, name, word=str):
        """The message with name for the setting and word(setting) for each of the others."""
        return self.template.format(name=name, value=_shown(self.value), **{o: word(o) for o in self.others})

    def flag(self, flags=None):
        """The message with the command line's flag for each setting it
        names: its entry in flags, else --name with dashes ("top_k" -> "--top-k")."""
        flags = flags or {}

        def word(setting):
            return flags.get(setting, "--" + setting.replace("_", "-"))

        return self.worded(word(self.name), word)


class Stop(Exception):
    """A callback raises this to end training cleanly after the iteration
    (the reader too, when told to stop while it waits for input)."""


class Unavailable(RuntimeError):
    """The engine asked for cannot run here (rnnpipe.engines); the message is one line."""


class Missing(Unavailable):
    """The torch engine was asked for and torch is not installed."""


class SessionError(Exception):
    """A training session on a model file cannot go on (its lock, a save:
    lock.py, session.py); the message is one line naming the file."""
