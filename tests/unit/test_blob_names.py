"""Validation of blob names, listing prefixes, container names and page sizes."""

from __future__ import annotations

import pytest

from core.errors import InvalidBlobName, InvalidInput
from infrastructure.storage.names import (
    MAX_SEGMENT_BYTES,
    validate_blob_name,
    validate_blob_prefix,
    validate_container_name,
    validate_page_size,
)

GOOD_BLOB_NAMES = [
    "a",
    "file.tif",
    "raw/2024/01/scene.tif",
    "deep/" * 100 + "leaf.json",
    "/".join(["x" * 204] * 5),  # 1024 characters
    "x" * 255,  # the longest segment
    "é" * 127 + "x",  # 255 UTF-8 bytes
    "emoji/" + "🌍" * 63,  # 252 UTF-8 bytes
    "/".join(["y" * 255] * 4),
    "with space/and-dash_underscore.tif",
    "unicode/ünïcødé/東京.tif",
    "emoji/🌍.geojson",
    ".hidden",
    "dir/.hidden/file",
    "..dots-inside../a..b",
    "a.b.c",
    "weird#name?.tif",
    "pct%20encoded",
    "colon:later/not-a-drive",
    "ab:c",
    "1:2",
    "a/b/c.d/e",
    "tab-free\u00a0nbsp",
    "space\u3000ideographic",  # Zs: a visible space, allowed
    "combining/e\u0301.tif",  # Mn: a combining accent
    "flag/\U0001f1eb\U0001f1f7.txt",  # regional indicators (So)
    "private\ue000use",  # Co
]


@pytest.mark.parametrize("name", GOOD_BLOB_NAMES)
def test_good_blob_names_are_returned_unchanged(name: str) -> None:
    assert validate_blob_name(name) is name


BAD_BLOB_NAMES = [
    ("", "is empty"),
    ("x" * 1025, "too long (1025 characters, at most 1024)"),
    ("/abs/path", "absolute path"),
    ("/", "absolute path"),
    ("\\server\\share", "absolute path"),
    ("C:/windows/file", "drive letter"),
    ("c:file", "drive letter"),
    ("Z:", "drive letter"),
    ("..", "'..' path segment"),
    ("../escape", "'..' path segment"),
    ("a/../../etc/passwd", "'..' path segment"),
    ("a/..", "'..' path segment"),
    (".", "'.' path segment"),
    ("./a", "'.' path segment"),
    ("a/./b", "'.' path segment"),
    ("a//b", "empty path segment"),
    ("a///", "ends with '/'"),
    ("dir/", "ends with '/'"),
    ("a\\b", "backslash"),
    ("a/b\\..\\c", "backslash"),
    ("nul\x00byte", "control character U+0000 at position 3"),
    ("new\nline", "control character U+000A"),
    ("tab\there", "control character U+0009"),
    ("esc\x1b", "control character U+001B"),
    ("unit\x1fsep", "control character U+001F"),
    ("del\x7f", "control character U+007F"),
    ("ends-with-dot.", "ends with '.'"),
    ("dir/file...", "ends with '.'"),
    ("lone\udc80surrogate", "lone surrogate"),
    ("high\ud800", "lone surrogate"),
    # C1 controls (Cc)
    ("next\x85line", "control character U+0085 at position 4"),
    ("c1\x80", "control character U+0080"),
    ("csi\x9b", "control character U+009B"),
    # format characters (Cf): bidi controls, zero-width characters, BOM, soft hyphen...
    ("invoice\u202etxt.exe", "invisible format character U+202E (RIGHT-TO-LEFT OVERRIDE) at position 7"),
    ("bidi\u202a", "format character U+202A (LEFT-TO-RIGHT EMBEDDING)"),
    ("isolate\u2066x", "format character U+2066 (LEFT-TO-RIGHT ISOLATE)"),
    ("mark\u200fx", "format character U+200F (RIGHT-TO-LEFT MARK)"),
    ("zero\u200bwidth", "format character U+200B (ZERO WIDTH SPACE)"),
    ("joiner\u200d", "format character U+200D (ZERO WIDTH JOINER)"),
    ("\ufeffbom", "format character U+FEFF (ZERO WIDTH NO-BREAK SPACE) at position 0"),
    ("soft\u00adhyphen", "format character U+00AD (SOFT HYPHEN)"),
    ("arabic\u0600sign", "format character U+0600"),
    ("tag\U000e0041", "format character U+E0041 (TAG LATIN CAPITAL LETTER A)"),
    ("dir/in\u2060visible/x", "format character U+2060 (WORD JOINER) at position 6"),
    # line and paragraph separators (Zl, Zp)
    ("line\u2028sep", "line separator U+2028 (LINE SEPARATOR)"),
    ("para\u2029sep", "paragraph separator U+2029 (PARAGRAPH SEPARATOR)"),
    # segments longer than a file name may be (255 UTF-8 bytes), whatever the characters
    ("x" * 256, "path segment of 256 UTF-8 bytes at position 0; at most 255"),
    ("ok/" + "é" * 128, "path segment of 256 UTF-8 bytes at position 3"),
    ("emoji/" + "🌍" * 64 + "/x", "path segment of 256 UTF-8 bytes at position 6"),
    ("a/" + "b" * 300 + "/c", "path segment of 300 UTF-8 bytes"),
]


@pytest.mark.parametrize(("name", "problem"), BAD_BLOB_NAMES)
def test_bad_blob_names_are_rejected_with_the_problem_named(name: str, problem: str) -> None:
    with pytest.raises(InvalidBlobName) as info:
        validate_blob_name(name)
    assert problem in info.value.message
    assert info.value.message.startswith("invalid blob name ")
    assert info.value.code == "invalid_blob_name"
    assert not info.value.retryable
    assert info.value.details["problem"] in info.value.message


def test_long_bad_names_are_shortened_in_the_message() -> None:
    with pytest.raises(InvalidBlobName) as info:
        validate_blob_name("y" * 5000)
    assert "5000 characters" in info.value.message
    assert len(info.value.message) < 200


@pytest.mark.parametrize("name", ["z" * 1000, "ok/" + "z" * 600 + "/end", "/".join(["z" * 200] * 4) + "\u202e"])
def test_long_names_are_shortened_in_every_message(name: str) -> None:
    with pytest.raises(InvalidBlobName) as info:
        validate_blob_name(name)
    assert len(info.value.message) < 300
    assert "z" * 200 not in info.value.message
    assert "z" * 200 not in str(info.value.details)


def test_segment_limit_counts_utf8_bytes_and_names_the_filesystem_limit() -> None:
    assert MAX_SEGMENT_BYTES == 255
    validate_blob_name("東" * 85)  # 255 bytes
    with pytest.raises(InvalidBlobName, match="common filesystems") as info:
        validate_blob_name("東" * 86)  # 86 characters, 258 bytes
    assert "258 UTF-8 bytes" in info.value.message


@pytest.mark.parametrize("value", [None, b"bytes", 42, ["a"]])
def test_non_string_blob_names_are_rejected(value: object) -> None:
    with pytest.raises(InvalidBlobName, match="must be a string"):
        validate_blob_name(value)  # type: ignore[arg-type]


def test_invalid_blob_name_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        validate_blob_name("a//b")


@pytest.mark.parametrize("prefix", ["", "a", "raw/", "raw/2024/0", "raw/sc", "x" * 1024, "ab.", "ünï/"])
def test_good_prefixes_are_returned_unchanged(prefix: str) -> None:
    assert validate_blob_prefix(prefix) is prefix


@pytest.mark.parametrize(
    ("prefix", "problem"),
    [
        ("/abs", "absolute path"),
        ("C:/x", "absolute path"),
        ("../", "'..' path segment"),
        ("a/../b", "'..' path segment"),
        ("a//", "empty, '.' or '..' path segment"),
        ("./a", "'.' or '..' path segment"),
        ("a\\b", "backslash"),
        ("a\x00", "control character U+0000"),
        ("a\x85", "control character U+0085"),
        ("a\udc80", "lone surrogate"),
        ("x" * 1025, "too long"),
    ],
)
def test_bad_prefixes_are_rejected(prefix: str, problem: str) -> None:
    with pytest.raises(InvalidBlobName) as info:
        validate_blob_prefix(prefix)
    assert problem in info.value.message
    assert info.value.message.startswith("invalid blob prefix ")


GOOD_CONTAINERS = ["abc", "bronze", "silver", "gold", "a-b-c", "x1y2z3", "123", "a" * 63, "t-0123456789abcdef"]


@pytest.mark.parametrize("name", GOOD_CONTAINERS)
def test_good_container_names_are_returned_unchanged(name: str) -> None:
    assert validate_container_name(name) is name


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "3 to 63 characters long, not 0"),
        ("ab", "3 to 63 characters long, not 2"),
        ("a" * 64, "3 to 63 characters long, not 64"),
        ("Bronze", "only lowercase letters, digits and hyphens"),
        ("under_score", "only lowercase letters, digits and hyphens"),
        ("dot.ted", "only lowercase letters, digits and hyphens"),
        ("sp ace", "only lowercase letters, digits and hyphens"),
        ("slash/y", "only lowercase letters, digits and hyphens"),
        ("$root", "only lowercase letters, digits and hyphens"),
        ("ünï", "only lowercase letters, digits and hyphens"),
        ("-abc", "start and end with a letter or digit"),
        ("abc-", "start and end with a letter or digit"),
        ("a--b", "consecutive hyphens"),
        ("../x", "only lowercase letters, digits and hyphens"),
    ],
)
def test_bad_container_names_are_rejected_with_the_problem_named(name: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_container_name(name)
    assert problem in info.value.message
    assert info.value.message.startswith("invalid container name ")
    assert info.value.details["problem"] == info.value.message.split(": ", 1)[1]


def test_non_string_container_name_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="must be a string"):
        validate_container_name(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [1, 10, 1000, 5000])
def test_good_page_sizes(size: int) -> None:
    assert validate_page_size(size) == size


@pytest.mark.parametrize("size", [0, -1, 5001, True, 1.5, "10"])
def test_bad_page_sizes(size: object) -> None:
    with pytest.raises(InvalidInput, match="from 1 to 5000"):
        validate_page_size(size)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name",
    [
        "\u0646\u0627\u0645\u0647\u200c\u0647\u0627/file.txt",  # Persian with ZERO WIDTH NON-JOINER
        "family-\U0001f468\u200d\U0001f469\u200d\U0001f467.png",  # emoji joined by ZERO WIDTH JOINER
        "soft\u00adhyphen.txt",
        "\u4e2d" * 86 + "/x.tif",  # a segment of 258 UTF-8 bytes
        "ends-with-dot.",
    ],
)
def test_names_azure_allows_can_be_read_but_not_written(name: str) -> None:
    assert validate_blob_name(name, writing=False) == name
    with pytest.raises(InvalidBlobName):
        validate_blob_name(name)
    assert validate_blob_prefix(name.split("/")[0]) == name.split("/")[0]


@pytest.mark.parametrize("name", ["a\x00b", "a\x85b", "../x", "/abs", "a//b", "a\\b"])
def test_safety_rules_apply_to_reading_too(name: str) -> None:
    with pytest.raises(InvalidBlobName):
        validate_blob_name(name, writing=False)
