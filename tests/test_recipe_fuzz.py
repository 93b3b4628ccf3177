"""No traceback ever reaches the user: seeded mutations of every bundled recipe through `harness validate`
end in `ok` (exit 0) or a one-line-per-problem error (exit 2), never an exception."""

import random

import pytest
import yaml
from conftest import REPO, run_cli

ODD_VALUES = [
    "",
    " ",
    -1,
    0,
    10**12,
    1.5e-300,
    True,
    None,
    [],
    {},
    [1, "a"],
    {"x": 1},
    "../../etc",
    "ü" * 3,
    "lora",
    "all-linear",
    "1e-3",
    float("nan"),
]


def leaves(node, path=()):
    """Every (path, value) in a YAML tree, mappings and lists included."""
    yield path, node
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield from leaves(child, (*path, key))


def mutate(data, rng: random.Random):
    """One random edit: drop a key, replace a value by an odd one, misspell a key, or add an unknown key."""
    path, _ = rng.choice([p for p in leaves(data) if p[0]])
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    key = path[-1]
    action = rng.choice(["drop", "replace", "misspell", "add"])
    if action == "drop":
        del parent[key]
    elif action == "replace":
        parent[key] = rng.choice(ODD_VALUES)
    elif action == "misspell" and isinstance(parent, dict):
        parent[key[:-1] + key[-1] * 2 if key else "x"] = parent.pop(key)
    elif isinstance(parent, dict):
        parent[f"{key}_extra"] = rng.choice(ODD_VALUES)
    return data


@pytest.mark.parametrize("recipe", sorted(p.name for p in (REPO / "recipes").glob("*.yaml")))
def test_mutated_recipes_never_raise(recipe, tmp_path):
    original = yaml.safe_load((REPO / "recipes" / recipe).read_text())
    rng = random.Random(recipe)
    outcomes = set()
    for n in range(15):  # 120 mutated recipes in all, different ones per recipe file (seeded by its name)
        data = original
        for _ in range(rng.randint(1, 3)):
            data = mutate(yaml.safe_load(yaml.safe_dump(data)), rng)
        path = tmp_path / f"m{n}.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
        result = run_cli("validate", path)  # an exception other than the CLI's own exit fails the test here
        assert result.exit_code in (0, 2), (data, result.output)
        assert "Traceback" not in result.output, result.output
        if result.exit_code == 2:
            assert str(path) in result.output or "error" in result.output.lower(), result.output
        outcomes.add(result.exit_code)
    assert 2 in outcomes  # the mutations do reach the validator's errors
