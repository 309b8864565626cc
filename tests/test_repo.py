"""Repository contracts: CI runs the README's test command; sam3/ never imports alias_opt."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    command = [line for line in ci if "pytest" in line and not line.startswith("#")]
    assert len(command) == 1
    readme = (REPO / "README.md").read_text()
    assert command[0].strip() in readme
    assert "pip install -q torch==2.13.0" in command[0]


def test_backend_never_imports_the_optimizer():
    offenders = []
    for path in (REPO / "sam3").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "alias_opt"]
    assert offenders == []


def test_declared_dependencies():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = " ".join(meta["dependencies"])
    for name in [
        "torch",
        "transformers",
        "pycocotools",
        "faiss-cpu",
        "numpy",
        "pillow",
        "safetensors",
        "scipy",
        "optuna",
        "tqdm",
        "ftfy",
        "regex",
        "matplotlib",
    ]:
        assert name in deps, name
    assert "torchvision" not in deps
    assert "pycocotools>=2.0.11" in deps
    dev = " ".join(meta["optional-dependencies"]["dev"])
    assert "pytest" in dev and "ruff" in dev


def test_sam3_lazy_exports_match_all():
    import sam3

    assert sorted(sam3.__all__) == sorted(sam3._EXPORTS)
    assert all(getattr(sam3, name) is not None for name in ("Sam3Tokenizer", "load_image"))


def test_installed_commands_resolve():
    """Every [project.scripts] command names a main(argv=None) -> int of the package, and every command
    that loads a model takes --dtype and --threads."""
    import importlib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"sam3-alias", "sam3-alias-evaluate", "sam3-alias-compare", "sam3-alias-tune"} <= set(scripts)
    for name, target in scripts.items():
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), name
        parser = getattr(importlib.import_module(module), "build_parser", None)
        if parser is not None and name != "sam3-alias-report":  # the report loads no model
            assert "--dtype" in parser().format_help(), name
            assert "--threads" in parser().format_help(), name


def test_toy_world_and_trainer_have_no_import_cycle():
    """Every import between sam3.toy modules (TYPE_CHECKING ones included) points one way."""
    toy = REPO / "sam3" / "toy"
    mods = {p.stem for p in toy.glob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for path in toy.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "sam3.toy":
                edges[path.stem] |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sam3.toy."):
                edges[path.stem].add(node.module.split(".")[2])
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in edges[m]:
            assert state.get(n) != 1, f"import cycle: {' -> '.join([*stack, m, n])}"
            if n not in state:
                visit(n, [*stack, m])
        state[m] = 2

    for m in sorted(mods):
        if m not in state:
            visit(m, [])
    assert "train_config" in edges["batch"] and "train" not in edges["batch"]
