"""Errors the engine raises for things a user can fix.

The CLI turns every :class:`ScarNetError` into one line on stderr and a non-zero exit;
the Slicer module shows the same line in a message box. Anything else is a bug.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path


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


def _module_name(filename: str) -> str:
    """The dotted module name of a source file ("…/scarnet/io.py" → "scarnet.io"), as ``warnings.warn`` gives it to
    the filters; a file outside any package by its name."""
    path = Path(filename)
    parts = [path.stem]
    for parent in path.parents:
        if not (parent / "__init__.py").is_file():
            break
        parts.insert(0, parent.name)
    return ".".join(parts)


@contextlib.contextmanager
def warnings_kept_in(messages: list[str]) -> Iterator[None]:
    """Warnings raised inside are shown as usual and also appended to ``messages`` (for a report), each once.

    What goes into the report does not depend on how warnings are shown: user warnings are recorded even where a
    notebook silenced them (``warnings.filterwarnings("ignore")``), and then shown (or not) as the filters say."""
    caught: list[warnings.WarningMessage] = []
    failed = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            yield
    except BaseException:
        failed = True
        raise
    finally:  # also when reading fails: a warning often explains the error that follows
        for warning in caught:
            text = str(warning.message)
            if text in messages:
                continue  # the same words again (one per slice, say): once in the report, as a display filter would
            messages.append(text)
            try:
                # Shown as the filters say, by the module that warned (a filter on "scarnet.io" applies).
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno,
                                       module=_module_name(warning.filename))
            except Warning:
                if not failed:  # an "error" filter: the warning is the error; never instead of the one raised
                    raise
