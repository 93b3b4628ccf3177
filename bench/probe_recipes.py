"""Seeded mutations of every bundled recipe through `harness validate` (in process, as the tests call it),
tallied as the hardening issue counts them: a clear error (exit 2, one line per problem, no traceback),
a traceback (any other exception or exit), or accepted (exit 0). Accepted mutations that put an odd value
(a boolean, NaN, a negative or huge number, a path out, an empty container) where the recipe had a value of
another kind are listed for review: they may be wrongly accepted.

    python bench/probe_recipes.py                  # 1,840 mutations (230 per bundled recipe), seeded
    python bench/probe_recipes.py --per-recipe 20
Prints the tally and the accepted odd cases; nothing is asserted (tests/test_recipe_fuzz.py asserts no
traceback on a seeded subset).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-recipe", type=int, default=230)
    args = parser.parse_args()
    tally, odd_accepted, tracebacks = probe(args.per_recipe)
    total = sum(tally.values())
    print(f"{total} mutated recipes: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.items())))
    print(f"accepted with an odd value the original did not hold (review): {len(odd_accepted)}")
    for line in Counter(odd_accepted).most_common(20):
        print(f"  {line[1]} x {line[0]}")
    for line in tracebacks[:20]:
        print(f"  traceback: {line}")


def probe(per_recipe: int) -> tuple[Counter, list[str], list[str]]:
    """`per_recipe` seeded mutations of each bundled recipe through validate: the tally (clear error,
    accepted, traceback), the accepted ones that hold an odd value, and the tracebacks."""
    from click.testing import CliRunner
    from test_recipe_fuzz import ODD_VALUES, mutate

    from harness.cli import main as cli

    runner = CliRunner()
    tally: Counter = Counter()
    odd_accepted: list[str] = []
    tracebacks: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        for recipe in sorted((REPO / "recipes").glob("*.yaml")):
            original = yaml.safe_load(recipe.read_text())
            rng = random.Random(f"probe/{recipe.name}")
            for n in range(per_recipe):
                data = original
                for _ in range(rng.randint(1, 3)):
                    data = mutate(yaml.safe_load(yaml.safe_dump(data)), rng)
                path = Path(folder) / f"{recipe.stem}-{n}.yaml"
                text = yaml.safe_dump(data, allow_unicode=True)
                path.write_text(text)
                result = runner.invoke(cli, ["validate", str(path)])
                if result.exit_code == 2 and "Traceback" not in result.output:
                    tally["clear error"] += 1
                elif result.exit_code == 0:
                    tally["accepted"] += 1
                    placed = [v for v in ODD_VALUES if v not in ("lora", "all-linear", "1e-3") and _holds(data, v)]
                    if placed and not _holds(original, placed[0]):
                        where = ".".join(map(str, _path_to(data, placed[0]) or ()))
                        odd_accepted.append(f"{recipe.name}: {where} = {placed[0]!r} accepted")
                else:
                    tally["traceback"] += 1
                    tracebacks.append(f"{recipe.name} #{n}: {type(result.exception).__name__}: {result.exception}")
    return tally, odd_accepted, tracebacks


def _path_to(node, value, path=()) -> tuple | None:
    """Where `value` first appears in a YAML tree."""
    if (isinstance(value, float) and value != value and isinstance(node, float) and node != node) or (
        type(node) is type(value) and node == value
    ):
        return path
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        found = _path_to(child, value, (*path, key))
        if found is not None:
            return found
    return None


def _holds(node, value) -> bool:
    """Whether `value` appears anywhere in a YAML tree (NaN by identity of kind)."""
    if isinstance(value, float) and value != value:
        found = isinstance(node, float) and node != node
    else:
        found = type(node) is type(value) and node == value
    if found:
        return True
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    return any(_holds(child, value) for child in children)


if __name__ == "__main__":
    main()
