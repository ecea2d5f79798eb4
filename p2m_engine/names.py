"""Check names that become file or folder names: dataset, model and task names from a hub folder, a catalog,
a suite or an LLM must never reach outside the folder they are joined to (no `../x`, `/abs`, NUL, separators)."""

from __future__ import annotations

import re
import unicodedata

from p2m_engine.errors import UnsafeNameError

MAX_NAME_BYTES = 255  # the usual file-name limit (ext4, APFS, NTFS)
_HUB_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def name_problem(name: object) -> str | None:
    """Why `name` cannot be used as one file or folder name, or None when it can."""
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not text"
    if not name or not name.strip():
        return "is empty"
    if name in (".", ".."):
        return "is a relative folder reference"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        return "contains a control character"
    if ":" in name:
        return "contains ':' (a drive or stream on Windows)"
    if name != name.strip():
        return "starts or ends with white space"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes"
    return None


def safe_name(name: object, what: str = "name") -> str:
    """Return `name` unchanged when it is safe as a single path component; otherwise raise.

    Safe means: non-empty text, not `.` or `..`, no `/` or `\\`, no NUL or other control character, no `:`,
    no leading or trailing white space, at most 255 bytes. The name is never rewritten: two different unsafe
    names must not silently map to the same folder.

    Args:
        name: the candidate name (a dataset folder, a model or task name, an id an LLM proposed...).
        what: what the name is, for the error message ("dataset name", "task name"...).

    Returns:
        The same string.

    Raises:
        UnsafeNameError: the name could escape or corrupt the folder it is joined to.
    """
    problem = name_problem(name)
    if problem:
        raise UnsafeNameError(f"The {what} {str(name)[:80]!r} cannot be used as a file name: it {problem}.")
    return name  # type: ignore[return-value]


def hub_id_folder(repo_id: object, what: str = "hub id") -> str:
    """The single folder name of a Hugging Face style id (`name` or `owner/name`): `owner--name`.

    Each part may hold letters, digits, `.`, `_` and `-`, starts with a letter or digit, and has no `..`
    or `--` (the Hub's own rules), so the folder name is unique and cannot climb out.

    Raises:
        UnsafeNameError: the id does not follow those rules.
    """
    if not isinstance(repo_id, str) or not repo_id:
        raise UnsafeNameError(f"The {what} {repo_id!r} is not a valid id.")
    parts = repo_id.split("/")
    if len(parts) > 2 or not all(
        _HUB_PART.match(p) and ".." not in p and "--" not in p and len(p) <= 96 for p in parts
    ):
        raise UnsafeNameError(f"The {what} {repo_id[:80]!r} is not a valid id (expected 'name' or 'owner/name' "
                              "with letters, digits, '.', '_' and '-').")
    return safe_name("--".join(parts), what)
