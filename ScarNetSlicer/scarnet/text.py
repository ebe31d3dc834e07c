"""Text from the input (file and folder names, DICOM descriptions, segment names) made safe to show.

Such text may hold characters that act instead of showing: terminal escape sequences (ESC) that set a
window title or clear the screen, a carriage return or line feed that starts a fake line in a log or a
row in a CSV, and Unicode bidirectional controls that turn the rest of a line around (U+202E makes
"gnp.exe" read "exe.png"). XML, and so an SVG, cannot hold most control characters at all.
:func:`visible` writes each of them as its Python escape (``\\x1b``, ``\\n``, ``\\u202e``), so what a
reader sees is the name as it is, and the JSON report keeps the exact text.
"""

from __future__ import annotations

import codecs
import re

#: C0 and C1 control characters (DEL included) and the Unicode bidirectional formatting characters: the
#: marks (ALM, LRM, RLM), embeddings and overrides (LRE, RLE, PDF, LRO, RLO) and isolates (LRI, RLI, FSI, PDI).
_ACTING = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """``text`` with every control and bidirectional formatting character written as its escape
    (``"scan\\x1b[31m"`` → ``"scan\\\\x1b[31m"``); other text, non-Latin scripts included, unchanged."""
    return _ACTING.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


#: ASCII for the symbols the messages and tables use, where the output's encoding cannot hold them (a C or POSIX
#: locale with PYTHONUTF8=0, PYTHONIOENCODING=ascii, a Latin-1 terminal): "1.4×1.4 mm" reads "1.4x1.4 mm".
_ASCII_STAND_INS = {"\u00d7": "x", "\u2192": "->", "\u2190": "<-", "\u2265": ">=", "\u2264": "<=", "\u00b0": " deg",
                    "\u00b5": "u", "\u03bc": "u", "\u2026": "...", "\u2013": "-", "\u2014": "-", "\u2212": "-",
                    "\u00b1": "+/-", "\u00b7": ".", "\u2248": "~", "\u00b2": "^2", "\u00b3": "^3"}
#: The name of the encoding error handler :func:`stand_in` is registered as.
STAND_IN_ERRORS = "scarnet-stand-in"


def stand_in(error: UnicodeError) -> tuple[str | bytes, int]:
    """An encoding error handler for text the output's encoding cannot hold: a symbol in ASCII (``×`` → ``x``),
    a byte a file name kept from another encoding (a lone surrogate) as that byte, anything else as its escape
    (``\\u2192``). Never raises: a run's result is not lost to how the terminal or the locale is set."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    char = error.object[error.start]
    if "\udc80" <= char <= "\udcff":  # as surrogateescape writes it: the file name's own byte
        return codecs.lookup_error("surrogateescape")(
            UnicodeEncodeError(error.encoding, error.object, error.start, error.start + 1, error.reason))
    return _ASCII_STAND_INS.get(char) or char.encode("ascii", "backslashreplace").decode("ascii"), error.start + 1


codecs.register_error(STAND_IN_ERRORS, stand_in)


def person_name(value: object) -> str:
    """A DICOM person name as it reads: ``Family^Given^Middle`` → ``Family, Given Middle`` (its ideographic and
    phonetic forms after '=' left out; runs of white space as one)."""
    parts = [" ".join(part.split()) for part in str(value or "").split("=")[0].split("^")]
    family, given = parts[0], " ".join(part for part in parts[1:3] if part)
    return f"{family}, {given}" if family and given else family or given


#: Width of the text written into a file or pipe (a log): rich would break lines at 80 columns there, mid-sentence.
LOG_WIDTH = 150


def output_console(quiet: bool = False):
    """A rich console for the results on stdout: as wide as the terminal, or :data:`LOG_WIDTH` into a file or pipe
    unless ``COLUMNS`` (the user's choice) is set. rich is imported here, not with the module."""
    import os

    from rich.console import Console

    console = Console(quiet=quiet, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(quiet=quiet, highlight=False, width=LOG_WIDTH)
    return console
