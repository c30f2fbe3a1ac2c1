"""The obvious alternative the benchmarks compare against.

    python bench/naive.py FILE URL

One `requests.post` per `csv.DictReader` row, retried on 503, with the least
conversion the service needs to accept a clean row (numbers as numbers, awards
capitalised). No validation, no duplicates, no reports: a lower bound on what
a careful importer has to do. Prints the delivered count as JSON.
"""

from __future__ import annotations

import csv
import json
import sys

import requests


def film(row: dict[str, str]) -> dict[str, object]:
    values = {key.strip().lstrip("*").lower(): value.strip() for key, value in row.items()}

    def number(text: str) -> float | None:
        return float(text) if text else None

    return {
        "year": int(values["year"]),
        "length": number(values["length"]),
        "title": values["title"],
        "subject": values["subject"],
        "actor": values["actor"],
        "actress": values["actress"],
        "director": values["director"],
        "popularity": number(values["popularity"]),
        "awards": values["awards"].capitalize(),
        "image": values["image"],
    }


def main(path: str, url: str) -> int:
    delivered = refused = 0
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            for _ in range(15):
                response = requests.post(url, json=film(row), timeout=10)
                if response.status_code != 503:
                    break
            if response.status_code == 201:
                delivered += 1
            else:
                refused += 1
    print(json.dumps({"delivered": delivered, "refused": refused}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
