"""Text from runs, tags, params and cards, made inert before it enters Markdown.

The gate's report is read by people on GitHub (and on a terminal) and by promote (the
verdict hidden in it). Anything a run's owner or a pull request can write (a
`data_hash` tag, a metric name, a card field, an exception's message) could otherwise
carry HTML, an HTML comment that forges the hidden verdict, an `@mention` that pings a
team, a `|` that breaks a table, a code span, a link or an image, math, or characters
that reorder the text on screen. `text` writes each character that Markdown or HTML
would read as markup as an HTML character reference (GitHub shows the character, never
the markup), puts an invisible word joiner after `@`, `#` and `://` so that no mention,
issue reference or autolink forms even once the references are decoded, and replaces
control and format characters; ordinary punctuation stays readable.
"""

from __future__ import annotations

import re
import unicodedata

WORD_JOINER = "\u2060"
_MARKUP = {"<": "&lt;", ">": "&gt;", "&": "&amp;", "|": "&#124;", "`": "&#96;",
           "[": "&#91;", "]": "&#93;", "*": "&#42;", "~": "&#126;", "\\": "&#92;",
           "$": "&#36;", "!": "&#33;"}
_JOINED = {"@": "@" + WORD_JOINER, "#": "#" + WORD_JOINER}
MERMAID_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
"""What may appear inside a Mermaid block: metric names of this shape only."""


def _inert(char: str) -> str:
    if char in _MARKUP:
        return _MARKUP[char]
    if char in _JOINED:
        return _JOINED[char]
    if unicodedata.category(char).startswith("C"):  # control, format (bidi), unassigned
        return "\ufffd"
    return char


def text(value: object, *, limit: int = 500) -> str:
    """`value` as inert Markdown text on one line, cut to `limit` characters first."""
    plain = " ".join(str(value).split())[:limit]
    inert = "".join(_inert(char) for char in plain)
    return inert.replace("://", ":" + WORD_JOINER + "//").replace("www.", "www" + WORD_JOINER
                                                                    + ".")


def code(value: object, *, limit: int = 200) -> str:
    """`value` in a code font: HTML `<code>` (a Markdown code span would show the
    character references literally, and a backtick in the value would end it)."""
    return f"<code>{text(value, limit=limit)}</code>"


def mermaid_name(value: str) -> bool:
    """True when `value` can be written into a Mermaid chart as it is."""
    return bool(MERMAID_NAME.match(value))
