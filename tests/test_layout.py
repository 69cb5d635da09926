"""The house rules that keep the package easy to change, checked on its source: short functions,
no import cycle between its parts, and each kind of knowledge in one module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "sgan"
PACKAGES = {p.name for p in SRC.iterdir() if (p / "__init__.py").is_file()}  # data, methods, models, report


def modules() -> dict[str, ast.Module]:
    return {str(p.relative_to(SRC)): ast.parse(p.read_text()) for p in sorted(SRC.rglob("*.py"))}


def strings(tree: ast.Module) -> list[str]:
    """Every string constant but docstrings (f-strings give their literal parts)."""
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs]


def test_no_function_is_longer_than_80_lines():
    long = [(name, node.name, node.end_lineno - node.lineno + 1) for name, tree in modules().items()
            for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > 80]
    assert not long, long


def part_of(module: str) -> str:
    """A subpackage is one part; a top-level module is a part of its own."""
    first = module.split(".")[0]
    return first if first in PACKAGES else module


def imports(name: str, tree: ast.Module) -> set[str]:
    """The parts of sgan a module imports, anywhere in it (a lazy import inside a function counts)."""
    here = name.removesuffix(".py").split("/")  # e.g. ["data", "prepare"]
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:  # relative: `from ..config import Config` in data/prepare.py -> config
            base = here[:len(here) - node.level]
        elif (node.module or "").startswith("sgan."):
            base = []
        else:
            continue
        module = (node.module or "").removeprefix("sgan.")
        targets = [base + module.split(".")] if module else [base + [a.name] for a in node.names]
        found |= {part_of(".".join(t)) for t in targets}
    return found


def test_no_import_cycle_between_parts_of_the_package():
    graph: dict[str, set[str]] = {}
    for name, tree in modules().items():
        if name == "__init__.py" or name == "__main__.py":
            continue
        part = part_of(name.removesuffix(".py").replace("/", "."))
        graph.setdefault(part, set()).update(imports(name, tree) - {part, ""})
    assert {"config", "data", "methods", "models"} <= graph["trainer"] | graph["methods"]  # the walk sees imports

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return path + [nxt]
                if nxt not in path:
                    stack.append((nxt, path + [nxt]))
        return None

    cycles = [c for part in graph if (c := cycle_from(part))]
    assert not cycles, cycles[0]


def test_run_folder_file_names_live_in_run_py_only():
    trees = modules()
    pattern = re.compile(r"^[\w*+-]*\.(json|jsonl|safetensors|png|csv|md|html)$")
    names = {s for s in strings(trees["run.py"]) if pattern.match(s) and not s.startswith(".")}
    assert {"metrics.json", "config.json", "checkpoint.safetensors", "_samples.png", "picks.csv"} <= names
    elsewhere = [(module, s) for module, tree in trees.items() if module != "run.py" for s in strings(tree)
                 if s in names or any(n.startswith("_") and s.endswith(n) for n in names)]
    assert not elsewhere, elsewhere


def test_checkpoint_key_names_live_in_state_py_only():
    trees = modules()
    keys = re.compile(r"^(rng[._]|rank\d|opt\d|best\.)|^(log_bytes|rank_orders|param_groups|schedules|done|world)$")
    assert sum(bool(keys.match(s)) for s in strings(trees["state.py"])) >= 8
    elsewhere = [(module, s) for module, tree in trees.items() if module != "state.py" for s in strings(tree)
                 if keys.match(s)]
    assert not elsewhere, elsewhere


def test_documentation_links_stay_inside_the_repository():
    root = SRC.parents[1]
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    outside, missing = [], []
    for page in pages:
        text = page.read_text()
        if "../shared" in text:  # a path a reader of the repository cannot open
            outside.append(page.name)
        for target in re.findall(r"\]\(([^)#\s]+)", text):
            if target.startswith(("http://", "https://")):
                continue
            path = (page.parent / target).resolve()
            if root not in path.parents or not path.exists():
                missing.append((page.name, target))
    assert not outside and not missing, (outside, missing)


def test_studies_have_one_entry_point_sgan_sweep():
    # a benchmark script that builds its own sweep is a second entry point with its own defaults
    benchmarks = SRC.parents[1] / "benchmarks"
    second = [p.name for p in benchmarks.glob("*.py") if re.search(r"\brun_sweep\b|\bSweep\(", p.read_text())]
    assert not second, second
    assert sorted(p.name for p in benchmarks.glob("*.toml")) == ["kannada10k.toml", "pets12k-gpu.toml", "pets12k32-resnet9.toml", "pets12k32.toml",
                                                                        "pets25k-pilots.toml", "pets25k-resnet18.toml", "pets25k.toml"]


def runtime_imports(tree: ast.Module) -> list[ast.ImportFrom]:
    """The `from ... import` statements that run (those under `if TYPE_CHECKING:` never do)."""
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", "") == "TYPE_CHECKING" for n in ast.walk(node)}
    return [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and id(n) not in typing_only]


def calls_of(name: str) -> list[str]:
    """The modules that call `name(...)`."""
    return sorted(module for module, tree in modules().items() for n in ast.walk(tree)
                  if isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) == name)


def test_the_plan_makes_every_choice_in_one_place_and_data_chooses_none():
    # nothing under data/ imports the config, the plan or the models when it runs: it gets a plan's config
    for module, tree in modules().items():
        if module.startswith("data/"):
            bad = [n.module for n in runtime_imports(tree) if n.level == 2 and n.module in ("config", "plan", "models")]
            assert not bad, (module, bad)
    assert calls_of("fit_model") == ["plan.py"]  # one place fits the model to the images
    assert calls_of("default_run_path") == ["plan.py"]  # one place computes the output folder
    assert calls_of("amp_enabled") == ["plan.py"]  # bf16 or not
