"""Make movie CSV exports that look like real ones, defects included.

    python bench/generate.py --rows 2000000 --out bench/out/films-2m.csv
    python bench/generate.py --sample --out examples/films.csv   # the bundled demo file

Deterministic for a given seed. Names and titles are assembled from word lists
written for this project; the defects are the ones real exports have: wrong
field counts, out-of-range or malformed values, exact duplicates, blank lines,
a multi-line quoted cell, an unbalanced quote, a byte in the wrong encoding.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HEADER = ["Year", "Length", "Title", "Subject", "Actor", "Actress", "Director", "Popularity", "Awards", "*Image"]
TYPE_ROW = ["INT", "INT", "STRING", "CAT", "CAT", "CAT", "CAT", "INT", "BOOL", "STRING"]

SUBJECTS = ["Drama", "Comedy", "Action", "Horror", "Western", "Mystery", "Science Fiction", "War", "Music", "Romance"]
FIRST = ["Anna", "Bruno", "Clara", "Diego", "Elsa", "Félix", "Greta", "Hugo", "Inés", "Jonas", "Karin",
         "Luis", "Marta", "Nils", "Olga", "Pablo", "Rosa", "Sven", "Teresa", "Ulrich", "Vera", "Walter",
         "Yvonne", "Zoé"]  # fmt: skip
LAST = ["Almeida", "Bergström", "Castaño", "Duval", "Eriksen", "Fontaine", "García", "Hauser", "Ibáñez", "Jansen",
        "Kowalski", "Larsen", "Müller", "Novak", "Olsen", "Peña", "Quintero", "Rossi", "Schäfer", "Torres",
        "Umberto", "Vidal", "Weber", "Zúñiga"]  # fmt: skip
WORDS = ["Silent", "River", "Night", "Last", "Summer", "Broken", "Glass", "Empire", "Little", "Shadow", "Golden",
         "Road", "Winter", "Storm", "Hidden", "City", "Lost", "Garden", "Red", "Harbor", "Distant", "Train",
         "Secret", "Island", "Wild", "Heart", "Long", "Journey", "Dark", "Mirror", "Paper", "Moon"]  # fmt: skip


def _person(rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return f"{last}, {first}", f"{last}{first}"


def valid_row(rng: random.Random, serial: int) -> list[str]:
    """A film every rule accepts."""
    actor, actor_image = _person(rng)
    actress, _ = _person(rng)
    director, _ = _person(rng)
    words = rng.sample(WORDS, rng.randint(1, 3))
    title = " ".join(words) + (f" {serial % 97 + 2}" if rng.random() < 0.3 else "")
    return [
        str(rng.randint(1920, 2020)),
        "" if rng.random() < 0.05 else str(rng.randint(70, 190)),
        title,
        rng.choice(SUBJECTS),
        actor,
        actress,
        director,
        "" if rng.random() < 0.05 else str(rng.randint(0, 100)),
        rng.choice(["Yes", "No", "No", "no", ""]),
        "" if rng.random() < 0.1 else f"{actor_image}.{rng.choice(['png', 'jpg', 'jpeg'])}",
    ]


def _set(index: int, value: str) -> Callable[[list[str]], list[str]]:
    def change(row: list[str]) -> list[str]:
        row[index] = value
        return row

    return change


# Value defects: each leaves the row's shape intact and breaks one rule.
VALUE_DEFECTS: list[Callable[[list[str]], list[str]]] = [
    _set(0, "1850"),  # year before cinema
    _set(0, "2099"),  # year in the future
    _set(0, "1990.0"),  # not a whole number
    _set(0, ""),  # missing year
    _set(2, ""),  # missing title
    _set(1, "-5"),  # negative length
    _set(7, "130"),  # popularity over 100
    _set(7, "7,5"),  # decimal comma
    _set(7, "n/a"),  # not a number
    _set(8, "Maybe"),  # awards outside Yes/No
    _set(9, "poster.gif"),  # image type the sink refuses
    _set(9, "POSTER.PNG"),  # extension in upper case
    _set(2, "Bell\x07Title"),  # control character
]


Film = tuple[int, str, str, str, str, str]
"""What identifies a film in the oracle: year, title, subject, actor, actress, director."""


def film_of(row: list[str]) -> Film:
    return (int(row[0]), row[2].strip(), row[3], row[4], row[5], row[6])


def rows(count: int, seed: int, defect_rate: float, duplicate_rate: float) -> Iterator[tuple[str, list[str] | str]]:
    """(kind, row) for `count` records: kind is valid, duplicate, invalid or blank; a blank row is ""."""
    rng = random.Random(seed)
    recent: list[list[str]] = []
    for serial in range(count):
        roll = rng.random()
        if recent and roll < duplicate_rate:
            yield "duplicate", list(rng.choice(recent))
            continue
        row = valid_row(rng, serial)
        if roll < duplicate_rate + defect_rate:
            kind = rng.random()
            if kind < 0.15:
                yield "invalid", row[: rng.randint(3, 9)]  # missing cells
            elif kind < 0.22:
                yield "invalid", [*row, "extra"]  # one cell too many
            elif kind < 0.25:
                yield "blank", ""
            else:
                yield "invalid", rng.choice(VALUE_DEFECTS)(row)
            continue
        recent.append(row)
        if len(recent) > 500:
            recent.pop(rng.randrange(len(recent)))
        yield "valid", row


@dataclass
class Expected:
    """What a correct import of the written file does: the oracle of the integration tests."""

    films: set[Film] = field(default_factory=set)
    invalid_lines: list[int] = field(default_factory=list)
    duplicate_lines: list[int] = field(default_factory=list)
    blank_lines: list[int] = field(default_factory=list)


def write(
    out: Path,
    count: int,
    *,
    seed: int = 1,
    encoding: str = "utf-8",
    delimiter: str = ",",
    type_row: bool = False,
    defect_rate: float = 0.05,
    duplicate_rate: float = 0.03,
    extras: bool = False,
) -> Expected:
    """Write the file; `extras` adds the rare structural defects (multi-line cell, stray quote, bad byte)."""
    expected = Expected()
    out.parent.mkdir(parents=True, exist_ok=True)
    line = 1
    with out.open("wb") as binary:
        text = io.TextIOWrapper(binary, encoding=encoding, newline="", write_through=False)
        writer = csv.writer(text, delimiter=delimiter, lineterminator="\r\n")
        writer.writerow(HEADER)
        if type_row:
            writer.writerow(TYPE_ROW)
            line += 1
        for index, (kind, row) in enumerate(rows(count, seed, defect_rate, duplicate_rate)):
            line += 1
            if isinstance(row, str):
                text.write(row + "\r\n")
                expected.blank_lines.append(line)
            else:
                writer.writerow(row)
                if kind == "invalid":
                    expected.invalid_lines.append(line)
                elif film_of(row) in expected.films:
                    expected.duplicate_lines.append(line)
                else:
                    expected.films.add(film_of(row))
            if extras and index == count // 3:
                text.write("\r\n" + delimiter * (len(HEADER) - 1) + "\r\n")  # a blank line, then an empty row
                expected.blank_lines += [line + 1, line + 2]
                line += 2
            if extras and index == count // 4:
                two_lines = ["1994", "101", "Two Lines\nOne Film", "Drama", "Weber, Hugo", "", "", "50", "No", ""]
                writer.writerow(two_lines)
                expected.films.add(film_of(two_lines))
                line += 2
            if extras and index == count // 2:
                text.write(delimiter.join(["1961", "95", '"Unclosed Quote', "Comedy", "", "", "", "40", "No", ""]))
                text.write("\r\n")
                line += 1
                expected.invalid_lines.append(line)
            if extras and index == 3 * count // 4:
                text.flush()
                bad = "ÿ".encode("cp1252") if encoding.lower().startswith("utf") else b"\x81"
                binary.write(delimiter.encode().join([b"1977", b"99", b"Wrong " + bad + b"yte", b"Drama"]))
                binary.write(delimiter.encode() * 6 + b"\r\n")
                line += 1
                expected.invalid_lines.append(line)
        text.flush()
        text.detach()
    return expected


SAMPLE_OPTIONS: dict[str, Any] = {
    "seed": 1,
    "encoding": "cp1252",
    "delimiter": ";",
    "type_row": True,
    "defect_rate": 0.12,
    "duplicate_rate": 0.05,
    "extras": True,
}
"""examples/films.csv: 240 rows in the shape of the classic film.csv, cp1252, semicolons, a type row."""


def write_sample(out: Path) -> Expected:
    return write(out, 240, **SAMPLE_OPTIONS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sample", action="store_true", help="the demo file examples/films.csv (fixed seed)")
    parser.add_argument("--clean", action="store_true", help="no defects and no duplicates")
    args = parser.parse_args(argv)
    if args.sample:
        write_sample(args.out)
    elif args.clean:
        write(args.out, args.rows, seed=args.seed, defect_rate=0, duplicate_rate=0)
    else:
        write(args.out, args.rows, seed=args.seed, extras=True)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
