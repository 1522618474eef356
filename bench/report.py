"""How every benchmark prints its table: markdown, columns padded to line up."""
from __future__ import annotations


def print_table(header: list[str], lines: list[list[str]]) -> None:
    table = [header] + lines
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in table[1:]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |")
