"""The house plan, enforced: the allowed imports between the packages (ARCHITECTURE.md), no
import cycle between modules (imports inside functions count), only the app imports
Streamlit, and no engine file over 600 lines."""

import ast
from pathlib import Path

from tests.helpers import PROJECT

ENGINE = PROJECT / "nsclc_engine"
# what each part may import besides itself and the shared modules: ARCHITECTURE.md's table
SHARED = {
    *("config", "paths", "parallel", "atomic", "diskstore", "access"),
    *("task_spec", "run_records"),
}
ALLOWED = {
    "stats": set(),
    "cohort": set(),
    "review": {"cohort", "runs"},
    "synth": {"cohort", "stats"},
    "demo": {"cohort", "synth"},
    "preprocess": {"cohort"},
    "runs": {"cohort"},
    "evaluate": {"stats", "cohort", "demo", "synth", "preprocess", "runs"},
    "train": {"stats", "cohort", "synth", "demo", "preprocess", "runs", "evaluate", "review"},
    "explain": {"stats", "cohort", "preprocess", "runs", "train"},
    "honesty": {"runs", "evaluate", "train"},
    "validate": {"stats", "cohort", "preprocess", "runs", "evaluate", "train", "explain"},
    "dashboard": {
        *("stats", "cohort", "preprocess", "runs", "evaluate", "train", "explain", "tune"),
        "review",
    },
    "features": {"stats", "cohort", "synth", "demo", "preprocess", "runs", "evaluate", "train"},
    "tune": {"stats", "cohort", "synth", "demo", "preprocess", "runs", "evaluate", "train"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def engine_modules() -> dict[str, Path]:
    return {module_name(path): path for path in ENGINE.rglob("*.py")}


def part_of(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def test_each_part_imports_only_what_the_plan_allows():
    wrong = []
    for name, path in engine_modules().items():
        part = part_of(name)
        if part in SHARED or not part:
            allowed = set()
        else:
            allowed = ALLOWED[part]
        for imported in imports_of(path):
            if not imported.startswith("nsclc_engine."):
                continue
            target = part_of(imported)
            if target in {part, *SHARED, *allowed}:
                continue
            wrong.append(f"{name} imports {imported}")
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_evaluation_never_imports_training():
    evaluation = [p for n, p in engine_modules().items() if part_of(n) in ("evaluate", "stats")]
    assert evaluation
    for path in evaluation:
        assert not any(i.startswith("nsclc_engine.train") for i in imports_of(path)), path


def test_no_import_cycle_between_modules():
    modules = engine_modules()
    graph = {
        name: {i for i in imports_of(path) if i in modules and i != name}
        for name, path in modules.items()
    }
    # a package's __init__ is imported with each of its modules: not an edge of the cycle
    graph = {n: {i for i in deps if not n.startswith(i + ".")} for n, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail, node, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_only_the_app_imports_streamlit():
    offenders = [
        str(path.relative_to(PROJECT))
        for path in ENGINE.rglob("*.py")
        if any(i.split(".")[0] == "streamlit" for i in imports_of(path))
    ]
    assert not offenders
    assert "streamlit" in {i.split(".")[0] for i in imports_of(PROJECT / "ui" / "common.py")}


def test_no_engine_file_over_600_lines():
    long = {
        str(p.relative_to(PROJECT)): n
        for p in ENGINE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 600
    }
    assert not long, long


def test_only_runs_spells_the_run_folders_file_names():
    """``nsclc_engine.runs`` owns the run folder: every other module reads and writes its files
    through it (``read_predictions``, ``write_metrics``, ``Run``, ...)."""
    from nsclc_engine import runs

    names = [runs.CONFIG, runs.SPLITS, runs.STATUS, runs.HISTORY, runs.PREDICTIONS]
    names += [runs.METRICS, runs.THRESHOLD, runs.CALIBRATION]
    sources = [*ENGINE.rglob("*.py"), *(PROJECT / "ui").rglob("*.py"), PROJECT / "app.py"]
    spelled = {
        f"{path.relative_to(PROJECT)}: {name}"
        for path in sources
        if path != ENGINE / "runs.py"
        for name in names
        if f'"{name}"' in path.read_text() or f"'{name}'" in path.read_text()
    }
    assert not spelled


def test_no_guard_against_a_missing_section_of_a_run_file():
    """A run file's sections are typed properties of :mod:`nsclc_engine.run_records`, empty
    where the run has none: nothing guards against a shape no one owns with
    ``(x or {}).get``."""
    sources = [*ENGINE.rglob("*.py"), *(PROJECT / "ui").rglob("*.py"), PROJECT / "app.py"]
    guarded = [
        f"{path.relative_to(PROJECT)}:{number}"
        for path in sources
        if path != ENGINE / "run_records.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "or {}).get(" in line
    ]
    assert not guarded


MAX_FUNCTION_LINES = 120


def test_no_engine_function_over_120_lines():
    over = {
        f"{path.relative_to(ENGINE)}:{node.name}": node.end_lineno - node.lineno + 1
        for path in ENGINE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    }
    assert not over
