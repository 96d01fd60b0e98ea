"""The package's shape, read from its source (no module is imported for the static checks):
no two modules import each other, directly or around a circle; the core imports no subpackage
but the kernels it dispatches to; Dask is imported by the runner's functions only."""
import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "scratchvae"
# What the core may import besides itself: the hand-written CUDA kernels its functions call on
# CuPy arrays (activations, distributions, optim). The kernels import only `backend` of the core.
CORE_MAY_IMPORT = {"scratchvae.kernels"}
NOT_CORE = {"scratchvae", "scratchvae.__main__"}   # the package's front door and `python -m`
CLUSTER = ("distributed", "dask")
RUNNER = "scratchvae.experiments.runner"


def modules():
    """``{dotted name: (path, is_package)}`` for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def imports(name, path, is_package, known):
    """``[(imported module, line, inside a function)]`` of one module, every import statement
    counted, at the top or inside a function. ``from .x import y`` imports ``x.y`` when that
    is a module, else ``x``."""
    package = name if is_package else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    in_function = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for n in ast.walk(f)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        found += [(t, node.lineno, id(node) in in_function) for t in targets]
    return found


def graph():
    known = modules()
    return known, {name: {t for t, _, _ in imports(name, path, pkg, known) if t in known and t != name}
                   for name, (path, pkg) in known.items()}


def cycles(edges):
    """Every strongly connected set of more than one module (Tarjan), each as a sorted list."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_the_imports_it_must():
    known, edges = graph()
    assert len(known) > 50
    assert "scratchvae.validation" in edges["scratchvae.layers"]
    assert "scratchvae.experiments.runner" in edges["scratchvae.experiments.reproduce"]   # inside a function
    assert "scratchvae.kernels" in edges["scratchvae.activations"]                     # `from . import kernels`
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_anywhere_in_the_package():
    _, edges = graph()
    found = cycles(edges)
    described = ["; ".join(f"{m} imports {', '.join(sorted(edges[m] & set(group)))}" for m in group)
                 for group in found]
    assert not found, "import circles:\n" + "\n".join(described)


def test_the_core_imports_no_subpackage_but_the_kernels():
    known, edges = graph()
    core = {name for name, (_, pkg) in known.items() if name.count(".") == 1 and not pkg} - NOT_CORE
    assert {"scratchvae.backend", "scratchvae.vae", "scratchvae.validation"} <= core
    wrong = {m: sorted(t for t in edges[m] if t not in core and t not in CORE_MAY_IMPORT) for m in core}
    assert not any(wrong.values()), {m: t for m, t in wrong.items() if t}
    # the kernels, which the core imports, import no core module but `backend`
    kernels = {m for m in known if m.startswith("scratchvae.kernels")}
    assert all(t in kernels or t == "scratchvae.backend" for m in kernels for t in edges[m]), \
        {m: sorted(edges[m] - kernels) for m in kernels}


def test_dask_is_imported_only_inside_the_runners_functions():
    known = modules()
    for name, (path, pkg) in known.items():
        for target, line, in_function in imports(name, path, pkg, known):
            if target.split(".")[0] in CLUSTER:
                assert name == RUNNER and in_function, f"{path}:{line} imports {target}"


def test_the_library_and_its_command_line_load_without_dask():
    code = ("import sys, scratchvae, scratchvae.cli, scratchvae.experiments.reproduce, "
            "scratchvae.experiments.runner; scratchvae.cli.build_parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('distributed', 'dask')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=PACKAGE.parent, check=True).stdout
    assert out.strip() == "[]"


# The modules whose docstrings make the API reference (formulas as reST math: LaTeX in raw strings).
REFERENCE = ("backend", "module", "activations", "layers", "distributions", "decoders", "vae", "optim",
             "gradcheck", "validation")


def test_the_reference_modules_docstrings_with_a_backslash_are_raw_strings():
    """A docstring that writes ``\\frac`` or ``\\tanh`` in a plain string holds a form feed or a
    tab instead (and ``\\log`` an invalid-escape warning): every docstring of these modules that
    holds a backslash is a raw string."""
    found = 0
    for name in REFERENCE:
        path = PACKAGE / f"{name}.py"
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(node):
                source = ast.get_source_segment(text, node.body[0].value)
                if "\\" in source:
                    assert source.startswith(("r\"", "r'")), f"{path.name}:{node.body[0].lineno}"
                    found += 1
    assert found >= 30
