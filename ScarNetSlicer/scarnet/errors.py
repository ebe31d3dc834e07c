"""Errors the engine raises for things a user can fix.

The CLI turns every :class:`ScarNetError` into one line on stderr and a non-zero exit;
the Slicer module shows the same line in a message box. Anything else is a bug.
"""

from __future__ import annotations


class ScarNetError(Exception):
    """Base class of all user-facing engine errors (one clear line, no traceback)."""


class InputError(ScarNetError, ValueError):
    """An input file or volume cannot be used: missing, unreadable, 2D/4D, empty, NaN, wrong grid."""


class NoHeartFoundError(InputError):
    """The volume is readable but no left ventricle was found in it."""


class WeightsError(ScarNetError, RuntimeError):
    """A weights file is missing, corrupted, foreign or does not fit the chosen model."""


class OutputExistsError(ScarNetError, FileExistsError):
    """An output file exists and overwriting was not asked for."""


class OutputError(ScarNetError, OSError):
    """An output cannot be written where asked: wrong file type, folder missing, a file, not writable, disk full."""


class Cancelled(ScarNetError):
    """The user cancelled a running segmentation; nothing was written."""
