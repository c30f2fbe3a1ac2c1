"""What a CSV file is before its rows are read: its encoding, its delimiter, its header names, its type row."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from movymporter.dialect import (
    Dialect,
    decode_errors,
    detect_delimiter,
    detect_encoding,
    estimate_rows,
    explained,
    has_replaced,
    has_undecodable,
    is_type_row,
    normalise_name,
)
from movymporter.errors import InputError
from tests.test_reader import FILM_HEADER, FILM_ROW, FILM_TYPES, accent_at_sample_end, late_non_ascii, write

# --- encoding -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param("title,year\nAmélie,2001\n".encode(), "utf-8", id="utf8-without-bom"),
        pytest.param("\ufefftitle,year\nAmélie,2001\n".encode(), "utf-8-sig", id="utf8-with-bom"),
        pytest.param((FILM_HEADER + FILM_TYPES + FILM_ROW).encode("cp1252"), "cp1252", id="cp1252-classic-film-csv"),
        pytest.param("title,year\nAmélie,2001\n".encode("utf-16"), "utf-16", id="utf16-with-native-bom"),
        pytest.param(
            b"\xfe\xff" + "title,year\nAmélie,2001\n".encode("utf-16-be"), "utf-16", id="utf16-big-endian-bom"
        ),
        pytest.param(b"title,year\nHeat,1995\n", "utf-8", id="ascii-only-is-utf8"),
        pytest.param(b"", "utf-8", id="empty-file-is-utf8"),
        pytest.param(
            "title,year\nAmélie,2001\nLa Ciénaga,2001\n".encode() + b"Bad\xff,1999\n",
            "utf-8",
            id="utf8-with-one-stray-byte-is-still-utf8",
        ),
        pytest.param(late_non_ascii("utf-8"), "utf-8", id="utf8-first-non-ascii-after-1mib"),
        pytest.param(late_non_ascii("cp1252"), "cp1252", id="cp1252-first-non-ascii-after-1mib"),
        pytest.param(accent_at_sample_end(2), "utf-8", id="utf8-char-ends-at-sample-end"),
        pytest.param(accent_at_sample_end(1), "utf-8", id="utf8-char-split-across-sample-end"),
    ],
)
def test_detect_encoding(tmp_path: Path, data: bytes, expected: str) -> None:
    """detect_encoding names UTF-8 (with or without BOM), UTF-16 with a BOM, else cp1252."""
    assert detect_encoding(write(tmp_path, data)) == expected


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x00" * 4096, id="binary-file-of-nuls"),
        pytest.param("title,year\nAmélie,2001\n".encode("utf-16-le"), id="utf16-without-bom"),
    ],
)
def test_a_file_full_of_nul_bytes_has_no_encoding(tmp_path: Path, data: bytes) -> None:
    """A file whose head is more than a tenth NUL bytes is refused, with the way out (iconv, --encoding)."""
    with pytest.raises(InputError, match=r"binary file, or UTF-16 without a byte-order mark; convert it .* --encoding"):
        detect_encoding(write(tmp_path, data))


@pytest.mark.parametrize(
    ("encoding", "errors"),
    [
        pytest.param("utf-8", "surrogateescape", id="utf8-keeps-bytes"),
        pytest.param("utf-8-sig", "surrogateescape", id="utf8-sig-keeps-bytes"),
        pytest.param("cp1252", "surrogateescape", id="cp1252-keeps-bytes"),
        pytest.param("latin-1", "surrogateescape", id="latin1-keeps-bytes"),
        pytest.param("utf-16", "replace", id="utf16-replaces"),
        pytest.param("utf-16-le", "replace", id="utf16-le-replaces"),
        pytest.param("utf-32", "replace", id="utf32-replaces"),
    ],
)
def test_decode_errors(encoding: str, errors: str) -> None:
    """Undecodable bytes are kept as surrogates where the encoding is a superset of ASCII, else replaced."""
    assert decode_errors(encoding) == errors


@pytest.mark.parametrize(
    ("text", "undecodable", "replaced"),
    [
        pytest.param("Amélie,2001\n", False, False, id="clean-text"),
        pytest.param("A\x00,1\n", True, True, id="nul-byte"),
        pytest.param("Bad\udcff,1\n", True, False, id="byte-kept-as-surrogate"),
        pytest.param("Bad\ufffd,1\n", False, True, id="replacement-character"),
        pytest.param("", False, False, id="empty"),
    ],
)
def test_undecodable_bytes_are_found_as_the_decoder_left_them(text: str, undecodable: bool, replaced: bool) -> None:
    """has_undecodable finds a NUL or a byte kept as a lone surrogate, has_replaced a NUL or U+FFFD."""
    assert (has_undecodable(text), has_replaced(text)) == (undecodable, replaced)


# --- delimiter ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("title,year,length", ",", id="comma"),
        pytest.param("title;year;length", ";", id="semicolon"),
        pytest.param("title\tyear\tlength", "\t", id="tab"),
        pytest.param("title|year|length", "|", id="pipe"),
        pytest.param('"a;b;c",title,year', ",", id="semicolons-inside-quoted-name-do-not-count"),
        pytest.param('"a,b,c";title;year', ";", id="commas-inside-quoted-name-do-not-count"),
        pytest.param('"x|y|z"\ttitle\tyear', "\t", id="pipes-inside-quoted-name-do-not-count"),
        pytest.param("title", ",", id="single-column-defaults-to-comma"),
        pytest.param("title;year,length|actor;subject", ";", id="most-frequent-candidate-wins"),
    ],
)
def test_detect_delimiter(header: str, expected: str) -> None:
    """The delimiter is the candidate occurring most often outside quotes in the header line."""
    assert detect_delimiter(header) == expected


@pytest.mark.parametrize(
    ("dialect", "described"),
    [
        pytest.param(
            Dialect("utf-8", ",", encoding_detected=True, delimiter_detected=True),
            "encoding utf-8 (detected), delimiter comma (detected)",
            id="both-detected",
        ),
        pytest.param(
            Dialect("cp1252", "\t", encoding_detected=False, delimiter_detected=True),
            "encoding cp1252 (given), delimiter tab (detected)",
            id="encoding-given-tab",
        ),
        pytest.param(
            Dialect("utf-16", "|", encoding_detected=True, delimiter_detected=False),
            "encoding utf-16 (detected), delimiter pipe (given)",
            id="delimiter-given-pipe",
        ),
        pytest.param(
            Dialect("utf-8-sig", ";", encoding_detected=False, delimiter_detected=False),
            "encoding utf-8-sig (given), delimiter semicolon (given)",
            id="both-given-semicolon",
        ),
    ],
)
def test_dialect_describes_itself(dialect: Dialect, described: str) -> None:
    """A dialect names its encoding and its delimiter in words, and whether each was detected or given."""
    assert dialect.describe() == described


# --- header names and type row ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("Title", "title", id="case-folded"),
        pytest.param("  YEAR  ", "year", id="spaces-trimmed"),
        pytest.param("*Image", "image", id="leading-star-dropped"),
        pytest.param(" * Image ", "image", id="spaces-around-star-dropped"),
        pytest.param("\ufeffTitle", "title", id="bom-dropped"),
        pytest.param("Actor Name", "actor name", id="inner-space-kept"),
    ],
)
def test_normalise_name(name: str, expected: str) -> None:
    """Header names match ignoring case, surrounding spaces and a leading '*'."""
    assert normalise_name(name) == expected


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        pytest.param(FILM_TYPES.strip().split(";"), True, id="classic-film-types"),
        pytest.param(["varchar", " Integer ", "date"], True, id="any-case-and-spaces"),
        pytest.param(["INT", "", "STRING", ""], True, id="half-empty"),
        pytest.param(["INT", "", "", ""], False, id="mostly-empty"),
        pytest.param(["1990", "INT"], False, id="number-is-not-a-type"),
        pytest.param(["Heat", "STRING"], False, id="title-is-not-a-type"),
        pytest.param([], False, id="no-cells"),
        pytest.param(["", ""], False, id="only-empty-cells"),
    ],
)
def test_is_type_row(cells: list[str], expected: bool) -> None:
    """is_type_row accepts a row made (at least half) of known type names only."""
    assert is_type_row(cells) is expected


# --- size and the file system -------------------------------------------------------------------


def test_estimate_rows_from_the_mean_line_length(tmp_path: Path) -> None:
    """estimate_rows scales the line count of the file's head to the given size."""
    path = write(tmp_path, b"title,year\n" + b"Heat,1995\n" * 999)  # 1000 lines of 10 or 11 bytes
    size = path.stat().st_size
    assert estimate_rows(path, size) == 1000
    assert estimate_rows(path, size * 100) == 100_000
    assert estimate_rows(write(tmp_path, b"", "empty.csv"), 0) == 0


@pytest.mark.parametrize(
    ("error", "message"),
    [
        pytest.param(FileNotFoundError(2, "No such file or directory"), "no such file: {path}", id="missing-file"),
        pytest.param(IsADirectoryError(21, "Is a directory"), "{path} is a directory, not a CSV file", id="directory"),
        pytest.param(PermissionError(13, "Permission denied"), "cannot read {path}: permission denied", id="denied"),
        pytest.param(OSError(5, "Input/output error"), "cannot read {path}: Input/output error", id="os-error"),
        pytest.param(OSError("disk on fire"), "cannot read {path}: disk on fire", id="os-error-without-strerror"),
    ],
)
def test_explained_turns_os_errors_into_one_sentence(tmp_path: Path, error: OSError, message: str) -> None:
    """Whatever the OS says while a file is opened or read becomes an InputError of one plain sentence that
    names the path."""
    path = tmp_path / "input.csv"
    with pytest.raises(InputError, match=f"^{re.escape(message.format(path=path))}$"), explained(path):
        raise error


def test_explained_lets_other_errors_through(tmp_path: Path) -> None:
    """An error that is not the OS's is not explained away: it goes on as it is."""
    with pytest.raises(ValueError, match="not an OS error"), explained(tmp_path / "input.csv"):
        raise ValueError("not an OS error")
