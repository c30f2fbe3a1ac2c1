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
from pathlib import Path

HEADER = ["Year", "Length", "Title", "Subject", "Actor", "Actress", "Director", "Popularity", "Awards", "*Image"]
TYPE_ROW = ["INT", "INT", "STRING", "CAT", "CAT", "CAT", "CAT", "INT", "BOOL", "STRING"]

SUBJECTS = ["Drama", "Comedy", "Action", "Horror", "Western", "Mystery", "Science Fiction", "War", "Music", "Romance"]
FIRST = ["Anna", "Bruno", "Clara", "Diego", "Elsa", "Félix", "Greta", "Hugo", "Inés", "Jonas", "Karin", "Luis",
         "Marta", "Nils", "Olga", "Pablo", "Rosa", "Sven", "Teresa", "Ulrich", "Vera", "Walter", "Yvonne", "Zoé"]  # fmt: skip
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


def rows(count: int, seed: int, defect_rate: float, duplicate_rate: float) -> Iterator[list[str] | str]:
    """Data rows (lists) and raw lines (str, written as they are) for `count` records."""
    rng = random.Random(seed)
    recent: list[list[str]] = []
    for serial in range(count):
        roll = rng.random()
        if recent and roll < duplicate_rate:
            yield list(rng.choice(recent))
            continue
        row = valid_row(rng, serial)
        if roll < duplicate_rate + defect_rate:
            kind = rng.random()
            if kind < 0.15:
                yield row[: rng.randint(3, 9)]  # missing cells
            elif kind < 0.22:
                yield [*row, "extra"]  # one cell too many
            elif kind < 0.25:
                yield ""  # blank line
            else:
                yield rng.choice(VALUE_DEFECTS)(row)
            continue
        recent.append(row)
        if len(recent) > 500:
            recent.pop(rng.randrange(len(recent)))
        yield row


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
) -> None:
    """Write the file. `extras` adds the rare structural defects (multi-line cell, stray quote, bad byte)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as binary:
        text = io.TextIOWrapper(binary, encoding=encoding, newline="", write_through=False)
        writer = csv.writer(text, delimiter=delimiter, lineterminator="\r\n")
        writer.writerow(HEADER)
        if type_row:
            writer.writerow(TYPE_ROW)
        for index, row in enumerate(rows(count, seed, defect_rate, duplicate_rate)):
            if isinstance(row, str):
                text.write(row + "\r\n")
            else:
                writer.writerow(row)
            if extras and index == count // 4:
                writer.writerow(["1994", "101", "Two Lines\nOne Film", "Drama", "Weber, Hugo", "", "", "50", "No", ""])
            if extras and index == count // 2:
                text.write(delimiter.join(["1961", "95", '"Unclosed Quote', "Comedy", "", "", "", "40", "No", ""]))
                text.write("\r\n")
            if extras and index == 3 * count // 4:
                text.flush()
                bad = "ÿ".encode("cp1252") if encoding.lower().startswith("utf") else b"\x81"
                binary.write(delimiter.encode().join([b"1977", b"99", b"Wrong " + bad + b"yte", b"Drama"]))
                binary.write(delimiter.encode() * 6 + b"\r\n")
        text.flush()
        text.detach()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sample", action="store_true", help="the demo file: 240 rows, cp1252, ';', type row")
    args = parser.parse_args(argv)
    if args.sample:
        write(
            args.out,
            240,
            seed=args.seed,
            encoding="cp1252",
            delimiter=";",
            type_row=True,
            defect_rate=0.12,
            duplicate_rate=0.05,
            extras=True,
        )
    else:
        write(args.out, args.rows, seed=args.seed, extras=True)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
