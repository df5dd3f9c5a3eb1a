#!/usr/bin/env python3
"""Lists functions in `src/` longer than 80 lines; exits non-zero when there is one.

One exception, from the developer guide: a function that is an exhaustive `match` (its body is
one `match`, with at most a few lines before it) may be as long as its enum has variants.

Run: `python3 scripts/long_functions.py`. Functions are found by their rustfmt layout: the
`fn` line, and the closing `}` at the same indent.
"""

import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"
LIMIT = 80
# Lines of a body allowed outside its one `match` (bindings, a `use Enum::*`).
AROUND_MATCH = 5
FN = re.compile(r"^(\s*)(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")


def is_one_match(body, indent):
    """Whether `body` (the lines between the braces) is one `match` plus a few lines before;
    the match may be the value of `Ok(...)` (`Ok(match x {` ... `})`)."""
    inner = indent + "    "
    for i, line in enumerate(body):
        for start, end in (("match ", "}"), ("Ok(match ", "})")):
            if line.startswith(inner + start) and line.rstrip().endswith("{"):
                ends = [j for j in range(i + 1, len(body)) if body[j] == inner + end]
                return i <= AROUND_MATCH and bool(ends) and ends[0] == len(body) - 1
    return False


def long_functions(path):
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        m = FN.match(line)
        if not m:
            continue
        indent = m.group(1)
        end = next((j for j in range(i, len(lines)) if lines[j] == indent + "}"), None)
        if end is None or lines[i].rstrip().endswith(";"):
            continue
        length = end - i + 1
        if length <= LIMIT:
            continue
        start = next(j for j in range(i, end) if lines[j].rstrip().endswith("{"))
        if is_one_match(lines[start + 1 : end], indent):
            continue
        yield i + 1, m.group(7), length


def main():
    found = [
        (f.relative_to(SRC.parent), line, name, n)
        for f in sorted(SRC.rglob("*.rs"))
        for line, name, n in long_functions(f)
    ]
    for path, line, name, n in found:
        print(f"{path}:{line}: `{name}` is {n} lines (limit {LIMIT})", file=sys.stderr)
    if not found:
        print(f"no function over {LIMIT} lines outside an exhaustive match")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
