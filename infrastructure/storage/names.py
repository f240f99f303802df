"""Validation of container and blob names, done before any storage I/O.

Blob names are relative, ``/``-separated paths: no absolute paths, no
``.``/``..``/empty segments, no backslashes, no control characters. Names the
platform *writes* must also be portable to both backends: no segment longer
than a file name may be on common filesystems (255 UTF-8 bytes), and no
invisible format (e.g. bidi override) or line/paragraph separator characters.
Names it only *reads* may have those (Azure allows them, and a listing of a
real container returns them). Container names follow Azure's rules.
"""

from __future__ import annotations

import re
import unicodedata

from core.errors import InvalidBlobName, InvalidInput

MAX_BLOB_NAME_LENGTH = 1024
MAX_SEGMENT_BYTES = 255  # the longest file or folder name on common filesystems (ext4, XFS, APFS, NTFS...)
MAX_PAGE_SIZE = 5000  # Azure's largest listing page

# Unicode categories refused anywhere in a name: controls (C0 and C1), invisible format characters
# (bidi overrides, zero-width characters, BOM...), and the line and paragraph separators.
_REFUSED_CATEGORIES = {
    "Cc": "control character",
    "Cf": "invisible format character",
    "Zl": "line separator",
    "Zp": "paragraph separator",
}
_REFUSED_WHEN_READING = {"Cc"}
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTAINER = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_SHOWN = 80


def show_name(name: str) -> str:
    """The name for an error message (quoted), shortened when very long."""
    return repr(name if len(name) <= _SHOWN else name[:_SHOWN] + "...")


def _blob_error(name: str, problem: str) -> InvalidBlobName:
    return InvalidBlobName(f"invalid blob name {show_name(name)}: {problem}", name=name[:_SHOWN], problem=problem)


def _text_problem(text: str, writing: bool = True) -> str | None:
    """A problem shared by blob names and prefixes (refused characters, backslashes, encoding)."""
    for position, char in enumerate(text):
        category = unicodedata.category(char)
        kind = _REFUSED_CATEGORIES.get(category)
        if kind is not None and (writing or category in _REFUSED_WHEN_READING):
            label = unicodedata.name(char, "")
            label = f" ({label})" if label else ""
            return f"contains the {kind} U+{ord(char):04X}{label} at position {position}"
    if "\\" in text:
        return "contains a backslash ('\\'); use '/' to separate path segments"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (it contains a lone surrogate)"
    return None


def _path_problem(name: str, writing: bool = True) -> str | None:
    """A problem with the shape of ``name`` as a relative path."""
    if name.startswith(("/", "\\")):
        return "is an absolute path (starts with a slash)"
    if _DRIVE.match(name):
        return "is an absolute path (starts with a drive letter)"
    if name.endswith("/"):
        return "ends with '/'"
    position = 0
    for segment in name.split("/"):
        if segment == "":
            return "has an empty path segment ('//')"
        if segment == "..":
            return "has a '..' path segment"
        if segment == ".":
            return "has a '.' path segment"
        size = len(segment.encode("utf-8", "surrogatepass"))
        if writing and size > MAX_SEGMENT_BYTES:
            return (
                f"has a path segment of {size} UTF-8 bytes at position {position}; at most {MAX_SEGMENT_BYTES} "
                "are allowed per segment (the longest file or folder name on common filesystems)"
            )
        position += len(segment) + 1
    if writing and name.endswith("."):
        return "ends with '.' (Azure drops trailing dots)"
    return None


def validate_blob_name(name: str, *, writing: bool = True) -> str:
    """Return ``name`` unchanged if it is a valid blob name, else raise InvalidBlobName naming the problem.

    ``writing=False`` (reading, deleting, inspecting) applies only the safety rules, not portability.
    """
    if not isinstance(name, str):
        raise InvalidBlobName(f"invalid blob name {name!r}: must be a string, not {type(name).__name__}")
    if name == "":
        raise _blob_error(name, "is empty")
    if len(name) > MAX_BLOB_NAME_LENGTH:
        raise _blob_error(name, f"is too long ({len(name)} characters, at most {MAX_BLOB_NAME_LENGTH})")
    problem = _path_problem(name, writing) or _text_problem(name, writing)
    if problem:
        raise _blob_error(name, problem)
    return name


def validate_blob_prefix(prefix: str) -> str:
    """Return a listing prefix unchanged ('' lists everything); it may end with '/' or in mid-segment."""
    if not isinstance(prefix, str):
        raise InvalidBlobName(f"invalid blob prefix {prefix!r}: must be a string, not {type(prefix).__name__}")
    problem: str | None = None
    if len(prefix) > MAX_BLOB_NAME_LENGTH:
        problem = f"is too long ({len(prefix)} characters, at most {MAX_BLOB_NAME_LENGTH})"
    elif prefix.startswith(("/", "\\")) or _DRIVE.match(prefix):
        problem = "is an absolute path"
    elif any(segment in ("", ".", "..") for segment in prefix.split("/")[:-1]):
        problem = "has an empty, '.' or '..' path segment"
    else:
        problem = _text_problem(prefix, writing=False)
    if problem:
        raise InvalidBlobName(
            f"invalid blob prefix {show_name(prefix)}: {problem}", prefix=prefix[:_SHOWN], problem=problem
        )
    return prefix


def validate_container_name(name: str) -> str:
    """Return ``name`` unchanged if it follows Azure's container rules, else raise InvalidInput naming the problem."""
    if not isinstance(name, str):
        raise InvalidInput(f"invalid container name {name!r}: must be a string, not {type(name).__name__}")
    problem: str | None = None
    if not 3 <= len(name) <= 63:
        problem = f"must be 3 to 63 characters long, not {len(name)}"
    elif re.search(r"[^a-z0-9-]", name):
        problem = "may contain only lowercase letters, digits and hyphens"
    elif name.startswith("-") or name.endswith("-"):
        problem = "must start and end with a letter or digit"
    elif "--" in name:
        problem = "must not contain consecutive hyphens ('--')"
    if problem or not _CONTAINER.match(name):
        problem = problem or "is not a valid container name"
        raise InvalidInput(
            f"invalid container name {show_name(name)}: {problem}", container=name[:_SHOWN], problem=problem
        )
    return name


def validate_page_size(page_size: int) -> int:
    """Return a listing page size between 1 and 5000, else raise InvalidInput."""
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(f"invalid page size {page_size!r}: must be an integer from 1 to {MAX_PAGE_SIZE}")
    return page_size
