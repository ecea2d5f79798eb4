"""The one way untrusted text reaches the terminal: control characters removed, Rich markup escaped.

Untrusted is anything p2m did not write itself: LLM answers (the planner's reasons, generated examples),
dataset rows and cards, labels, file and folder names, error messages that quote any of these. Printed as
they are, `[/bold]` in a reason makes Rich raise MarkupError (and the build, `--json` builds, resume and
`p2m trace` crash), and an escape sequence clears the screen, retitles the window or forges output.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rich.markup import escape

# ESC sequences (CSI, OSC up to BEL or ST, two-character ones), then every other C0/C1 control character but
# newline and tab, and the Unicode bidirectional overrides that make text read differently than it is stored.
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"          # CSI: colours, cursor moves, clear screen
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window title, hyperlinks, clipboard
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"   # DCS, SOS, PM, APC strings
    r"|\x1b[@-_]?"                      # any other escape
    r"|\x9b[0-?]*[ -/]*[@-~]"          # CSI as one C1 character
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"  # C0 (but \t, \n), DEL, C1
    r"|[\u202a-\u202e\u2066-\u2069]"    # bidi embeddings, overrides, isolates
)


def plain(value: Any) -> str:
    """`value` as text without terminal control sequences (for click.echo and other plain output)."""
    return _CONTROL.sub("", str(value))


def safe(value: Any) -> str:
    """`value` as text fit for a Rich markup string: control sequences removed, `[` escaped."""
    return escape(plain(value))


# Characters JSON leaves as they are that a terminal may still act on (C1 controls, bidi overrides).
_JSON_UNSAFE = re.compile(r"[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def json_line(obj: Any) -> str:
    """`obj` as one JSON line for a terminal: the data unchanged, every control character as a \\u escape."""
    text = json.dumps(obj, ensure_ascii=False, default=str)  # C0 characters are escaped by json itself
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
