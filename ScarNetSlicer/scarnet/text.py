"""Text from the input (file and folder names, DICOM descriptions, segment names) made safe to show.

Such text may hold characters that act instead of showing: terminal escape sequences (ESC) that set a
window title or clear the screen, a carriage return or line feed that starts a fake line in a log or a
row in a CSV, and Unicode bidirectional controls that turn the rest of a line around (U+202E makes
"gnp.exe" read "exe.png"). XML, and so an SVG, cannot hold most control characters at all.
:func:`visible` writes each of them as its Python escape (``\\x1b``, ``\\n``, ``\\u202e``), so what a
reader sees is the name as it is, and the JSON report keeps the exact text.
"""

from __future__ import annotations

import re

#: C0 and C1 control characters (DEL included) and the Unicode bidirectional formatting characters: the
#: marks (ALM, LRM, RLM), embeddings and overrides (LRE, RLE, PDF, LRO, RLO) and isolates (LRI, RLI, FSI, PDI).
_ACTING = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """``text`` with every control and bidirectional formatting character written as its escape
    (``"scan\\x1b[31m"`` → ``"scan\\\\x1b[31m"``); other text, non-Latin scripts included, unchanged."""
    return _ACTING.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)
