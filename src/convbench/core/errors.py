"""The two kinds of failure a stage reports as one clear line instead of a traceback.

Every module raises its own subclass; the stage entry point catches these two bases and
so needs to import none of them.
"""

from __future__ import annotations


class ConvbenchError(Exception):
    """An expected failure whose message already names the file or key and the problem."""


class InputUnavailableError(ConvbenchError):
    """A data set or weights file cannot be had here: the flow skips what depends on it."""
