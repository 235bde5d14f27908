"""The packages depend one way: tasks → engine → islands and sandbox. A task imports the engine; nothing in the
engine, the program database or the sandbox imports a task."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOWER = ("engine", "islands", "sandbox")


def imported_modules(path: Path) -> set[str]:
    """Returns the absolute module names a file imports, at any depth (functions' lazy imports included);
    `from package import name` counts as importing package.name, which is a module or a name of the package."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def module_graph() -> dict[str, set[str]]:
    """Returns, for each module of the lower packages, the other such modules it imports."""
    modules = {}
    for package in LOWER:
        for path in (REPO / package).rglob("*.py"):
            modules[".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")] = path
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in imported_modules(path):
            while imported and imported not in modules:  # a name of a module: that module
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def test_no_engine_islands_or_sandbox_module_imports_a_task():
    offenders = [f"{path.relative_to(REPO)} imports {name}"
                 for package in LOWER for path in sorted((REPO / package).rglob("*.py"))
                 for name in sorted(imported_modules(path)) if name.split(".")[0] == "tasks"]
    assert not offenders, "\n".join(offenders)


def test_islands_and_sandbox_do_not_import_the_engine():
    offenders = [f"{path.relative_to(REPO)} imports {name}"
                 for package in ("islands", "sandbox") for path in sorted((REPO / package).rglob("*.py"))
                 for name in sorted(imported_modules(path)) if name.split(".")[0] == "engine"]
    assert not offenders, "\n".join(offenders)


def test_no_two_modules_import_each_other_directly_or_around_a_cycle():
    graph = module_graph()
    cycles, finished = [], set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycles.append(path[path.index(node):] + [node])
            return
        if node in finished:
            return
        for target in sorted(graph[node]):
            visit(target, path + [node])
        finished.add(node)

    for node in sorted(graph):
        visit(node, [])
    assert not cycles, "\n".join(" -> ".join(cycle) for cycle in cycles[:10])


def test_one_module_knows_how_a_candidate_declares_its_parameters():
    """Only islands/candidate_model.py spells the PARAMS name; the fitter, the mutator and the parser ask it."""
    spelled = {str(path.relative_to(REPO))
               for package in LOWER for path in sorted((REPO / package).rglob("*.py"))
               for node in ast.walk(ast.parse(path.read_text(), str(path)))
               if isinstance(node, ast.Constant) and node.value == "PARAMS"}
    assert spelled == {"islands/candidate_model.py"}, spelled


def test_one_module_reads_the_params_literal():
    """Only islands/candidate_model.py evaluates a candidate's PARAMS literal (ast.literal_eval) or validates its
    bounds; the fitter's ParamSpec and the mutator take its answer."""
    readers = {str(path.relative_to(REPO))
               for package in LOWER for path in sorted((REPO / package).rglob("*.py"))
               for node in ast.walk(ast.parse(path.read_text(), str(path)))
               if isinstance(node, ast.Attribute) and node.attr == "literal_eval"}
    # repair.py evaluates the quoted key of a dict item it rewrites (`params["beta"]`), not a declaration.
    assert readers <= {"islands/candidate_model.py", "engine/proposers/repair.py"}, readers


def test_every_engine_error_has_one_root():
    """Each exception class the engine defines derives from engine.errors.DiscoverError, which the command line
    prints as a sentence; islands and sandbox, which cannot import the engine, have one root each."""
    import importlib
    import inspect

    from engine.errors import DiscoverError

    strays = []
    for path in sorted((REPO / "engine").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        defined = [node.name for node in tree.body if isinstance(node, ast.ClassDef)]
        if not any(name.endswith(("Error", "Exhausted")) for name in defined):
            continue
        module = importlib.import_module(".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"))
        for name in defined:
            value = getattr(module, name)
            if inspect.isclass(value) and issubclass(value, BaseException) and not issubclass(value, DiscoverError):
                strays.append(f"{path.relative_to(REPO)}:{name}")
    assert strays == [], strays


def test_the_readmes_layout_names_every_folder_and_top_level_module_of_the_engine():
    readme = (REPO / "README.md").read_text()
    layout = readme[readme.index("## Layout"):readme.index("\n## ", readme.index("## Layout") + 3)]
    names = [f"`{path.name}`" for path in (REPO / "engine").glob("*.py") if path.name != "__init__.py"]
    names += [f"`{path.name}/`" for path in (REPO / "engine").iterdir() if (path / "__init__.py").is_file()]
    missing = [name for name in sorted(names) if name not in layout]
    assert missing == [], missing


def test_the_fitters_parameter_spec_does_not_load_the_program_database():
    """A scoring worker imports engine.fit's ParamSpec, which reads bounds through islands.candidate_model; that
    must not import the database's SQLAlchemy and pydantic (islands/__init__ loads its submodules on first use)."""
    import subprocess
    import sys

    code = ("import sys; import engine.fit.params; "
            "print(sorted(m for m in ('sqlalchemy', 'pydantic', 'islands.database') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stdout + loaded.stderr
