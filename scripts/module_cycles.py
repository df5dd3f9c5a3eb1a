#!/usr/bin/env python3
"""Import graph of Switchyard's top-level `src/` modules; exits non-zero on a cycle.

A module's edges are the other top-level modules it names as `crate::<name>` (in `use crate::…`
lines, `use crate::{a, b::…}` groups, and paths written inline). `#[cfg(test)] mod tests` blocks
count too: a test that reaches "up" is still a dependency. Comments and doc comments do not.

Run: `python3 scripts/module_cycles.py` (prints the graph, then any cycle found).
"""

import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"
# The crate's roots: they wire modules together and are not modules themselves.
ROOTS = {"lib.rs", "main.rs"}


def top_level_modules():
    mods = {}
    for entry in sorted(SRC.iterdir()):
        if entry.name in ROOTS:
            continue
        name = entry.stem if entry.is_file() else entry.name
        if entry.is_file() and entry.suffix != ".rs":
            continue
        files = mods.setdefault(name, [])
        files.extend([entry] if entry.is_file() else sorted(entry.rglob("*.rs")))
    return mods


def strip_comments(text):
    # Line comments (including `///` and `//!`); block comments are not used for code paths.
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def uses(text, names):
    found = set()
    for m in re.finditer(r"\bcrate::(\{[^;]*?\}|\w+)", text, flags=re.S):
        target = m.group(1)
        if target.startswith("{"):
            # `crate::{a::X, b, c::{..}}`: the first segment of each top-level item.
            depth, item, items = 0, "", []
            for ch in target[1:-1]:
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                if ch == "," and depth == 0:
                    items.append(item)
                    item = ""
                else:
                    item += ch
            items.append(item)
            for it in items:
                head = it.strip().split("::", 1)[0].strip()
                if head in names:
                    found.add(head)
        elif target in names:
            found.add(target)
    return found


def find_cycle(graph):
    """A cycle as a list of nodes (first == last), or None. Plain DFS with colours."""
    colour = {n: 0 for n in graph}
    stack = []

    def visit(node):
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if colour[nxt] == 1:
                return stack[stack.index(nxt):] + [nxt]
            if colour[nxt] == 0:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if colour[node] == 0:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def main():
    mods = top_level_modules()
    names = set(mods)
    graph = {}
    for name, files in mods.items():
        deps = set()
        for f in files:
            deps |= uses(strip_comments(f.read_text()), names)
        deps.discard(name)
        graph[name] = deps
    for name in sorted(graph):
        print(f"{name:<10} -> {', '.join(sorted(graph[name])) or '(nothing)'}")
    cycles = []
    remaining = {n: set(d) for n, d in graph.items()}
    # Report every cycle, one at a time: cut the found cycle's last edge and look again.
    while True:
        cycle = find_cycle(remaining)
        if not cycle:
            break
        cycles.append(cycle)
        remaining[cycle[-2]].discard(cycle[-1])
    if cycles:
        for cycle in cycles:
            print("cycle: " + " -> ".join(cycle), file=sys.stderr)
        return 1
    print("no import cycle among top-level modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
