"""The layering of hwsim, mapping and nets (README, "Design"): one direction of travel,
zoo -> IR -> passes -> mapping -> simulation -> report, no import cycles, and no torch where it is not needed.

Two kinds of checks:
- static (fast): every ``import`` statement of every module of the three packages, read with ``ast``;
- dynamic (``subprocess``): a module imported first in a fresh interpreter, then ``sys.modules`` inspected.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hwsim", "mapping", "nets")


# ----------------------------------------------------------------------------- the import graph, read statically
@cache
def modules() -> dict[str, Path]:
    """Every module of the three packages by dotted name (a package by its name, for its ``__init__``)."""
    out = {}
    for pkg in PACKAGES:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(p.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = p
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(name: str) -> str | None:
    """The project module that an imported dotted name lands in (None outside the three packages)."""
    mods = modules()
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


@cache
def imports(module: str) -> tuple[tuple[str, int, bool], ...]:
    """(imported dotted name, line, at module level) of every absolute import of ``module``.

    Module level = executed when the module is imported: top-level statements and those nested in a top-level
    ``if``/``try``/``with`` (but not ``if TYPE_CHECKING:``). ``from a.b import c`` names ``a.b.c`` when that is a
    module, else ``a.b``."""
    path = modules()[module]
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    found: list[tuple[str, int, bool]] = []

    def record(node: ast.AST, top: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend((a.name, node.lineno, top) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: make it absolute
                pkg = module if is_pkg else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    pkg = pkg.rpartition(".")[0]
                base = f"{pkg}.{base}" if base else pkg
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.append((sub if sub in modules() else base, node.lineno, top))

    def walk(body: list[ast.stmt], top: bool) -> None:
        for st in body:
            if isinstance(st, (ast.Import, ast.ImportFrom)):
                record(st, top)
            elif isinstance(st, ast.If):
                inner = top and not _is_type_checking(st.test)
                walk(st.body, inner)
                walk(st.orelse, top)
            elif isinstance(st, (ast.Try, getattr(ast, "TryStar", ast.Try))):
                walk(st.body, top)
                walk(st.orelse, top)
                walk(st.finalbody, top)
                for h in st.handlers:
                    walk(h.body, top)
            elif isinstance(st, (ast.With, ast.For, ast.While)):
                walk(st.body, top)
                walk(getattr(st, "orelse", []), top)
            else:  # functions, classes, ...: executed later (a class body runs at import, so it counts as top)
                top_here = top and isinstance(st, ast.ClassDef)
                for child in ast.iter_child_nodes(st):
                    if isinstance(child, ast.stmt):
                        walk([child], top_here)

    walk(tree.body, True)
    return tuple(found)


def module_level_graph() -> dict[str, set[str]]:
    """Edges between project modules through module-level imports (a submodule's implicit import of its parent
    package is left out: that is how every package works and never a cycle of its own making)."""
    graph = {}
    for m in modules():
        targets = {_resolve(name) for name, _, top in imports(m) if top}
        graph[m] = {t for t in targets if t and t != m}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_the_static_reader_sees_the_packages():
    mods = modules()
    assert {"hwsim", "hwsim.errors", "hwsim.imc.fit", "mapping.graph", "mapping.passes.fold_bn", "nets.registry"} <= set(mods)
    assert ("hwsim.imc.fit", True) in {(_resolve(n), top) for n, _, top in imports("hwsim.imc.simulate")}
    # a deferred import is seen, but not as module level
    assert ("hwsim.functional", False) in {(_resolve(n), top) for n, _, top in imports("mapping.verify")}


def test_cycles_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_at_module_level():
    found = cycles(module_level_graph())
    assert not found, "module-level import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_fit_sits_below_simulate():
    """The IMC fit verdict and the simulator once imported each other (fit at call time); ``prepare`` (the cached
    BN-folded graph and geometry both need) now lives in fit, and only simulate imports fit."""
    assert "hwsim.imc.simulate" not in {_resolve(n) for n, _, _ in imports("hwsim.imc.fit")}


# ----------------------------------------------------------------------------- the direction of travel
def _violations(select, forbidden, *, module_level_only: bool = False, allowed: frozenset = frozenset()):
    out = []
    for m in modules():
        if not select(m):
            continue
        for name, line, top in imports(m):
            if module_level_only and not top:
                continue
            if forbidden(name) and (m, name) not in allowed:
                out.append(f"{modules()[m].relative_to(ROOT)}:{line} imports {name}")
    return out


def _top(name: str) -> str:
    return name.split(".")[0]


def _leaf(name: str) -> bool:
    """The modules every layer may import: the error classes, the cache helper and the Numba kernels (none imports torch)."""
    return name in ("hwsim.errors", "hwsim.kernels", "hwsim.cache") or name.startswith(("hwsim.errors.", "hwsim.kernels."))


def test_errors_is_a_leaf():
    assert [n for n, _, _ in imports("hwsim.errors") if _top(n) in PACKAGES + ("torch", "numpy")] == []


def test_kernels_import_only_themselves_and_the_errors():
    assert _violations(lambda m: m.startswith("hwsim.kernels"),
                       lambda n: _top(n) in PACKAGES + ("torch",) and not _leaf(n)) == []


def test_the_ir_never_imports_the_zoo_or_the_simulators():
    # mapping.verify checks every imported node with hwsim's reference fp32 kernels (hwsim.functional.FP32_KERNELS),
    # imported at call time: the one deliberate step back, until that table moves into hwsim.kernels.
    allowed = frozenset({("mapping.verify", "hwsim.functional")})
    assert _violations(lambda m: _top(m) == "mapping",
                       lambda n: _top(n) == "nets" or (_top(n) == "hwsim" and not _leaf(n)), allowed=allowed) == []


def test_the_graph_is_the_bottom_of_the_ir():
    assert [n for n, _, _ in imports("mapping.graph") if _top(n) in PACKAGES + ("torch",)] == []


def test_a_pass_never_knows_about_a_target_or_an_importer():
    targets = ("mapping.imc", "mapping.fpga", "mapping.trace", "mapping.onnx", "mapping.qonnx", "mapping._torch",
               "mapping._builder", "mapping.binary")
    assert _violations(lambda m: m.startswith("mapping.passes"), lambda n: n.startswith(targets)) == []


def test_the_zoo_never_imports_the_simulators():
    assert _violations(lambda m: _top(m) == "nets", lambda n: _top(n) == "hwsim" and n != "hwsim.errors") == []


# the front ends of each target (they train or measure torch models) and the co-design loops (they build nets)
_FRONT_ENDS = ("hwsim.cli", "hwsim.api", "hwsim.evaluate", "hwsim.demo", "hwsim.plot", "hwsim.codesign",
               "hwsim.cpu.calibrate", "hwsim.cpu.calibration", "hwsim.cpu.demo", "hwsim.imc.demo", "hwsim.fpga.demo")


def _simulator(m: str) -> bool:
    return _top(m) == "hwsim" and m != "hwsim" and not m.startswith(_FRONT_ENDS)


def test_a_simulator_never_reaches_back_into_torch_or_the_zoo():
    assert _violations(_simulator, lambda n: _top(n) in ("torch", "nets")) == []


def test_the_report_is_the_end_of_the_line():
    assert _violations(lambda m: m == "hwsim.report",
                       lambda n: _top(n) in PACKAGES + ("torch",) and n != "hwsim.errors") == []


# ----------------------------------------------------------------------------- fresh interpreters
def _fresh(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


# The first three are the layering contract (mapping and nets import the errors, the IR is torch-free); the rest are
# the simulators, which run on numpy/Numba only (README: "A simulator never reaches back into torch").
TORCH_FREE = ["mapping.graph", "hwsim.errors", "hwsim.kernels", "hwsim", "mapping", "mapping.passes", "mapping.imc",
              "mapping.fpga", "hwsim.specs", "hwsim.report", "hwsim.api", "hwsim.functional", "hwsim.imc.fit",
              "hwsim.imc.simulate", "hwsim.cpu", "hwsim.imc", "hwsim.fpga"]


@pytest.mark.subprocess
@pytest.mark.parametrize("module", TORCH_FREE)
def test_import_loads_no_torch(module):
    """Imported first in a fresh interpreter (which is also a check that it has no import cycle)."""
    got = _fresh(f"import sys, json, {module}; print(json.dumps(sorted(m for m in sys.modules "
                 "if m.split('.')[0] in ('torch', 'nets', 'onnx', 'optuna', 'dask'))))")
    assert got == [], f"import {module} loaded {got[:5]}"


@pytest.mark.subprocess
def test_hwsim_keeps_every_public_name_and_loads_them_on_use():
    got = _fresh("""
import json, sys
import hwsim
lazy_before = sorted(m for m in ("hwsim.api", "hwsim.specs", "hwsim.report", "hwsim.errors") if m in sys.modules)
names = {n: type(getattr(hwsim, n)).__name__ for n in hwsim.__all__}
import hwsim.errors as E
same = all(getattr(hwsim, n) is getattr(E, n) for n in E.__all__)
print(json.dumps({"before": lazy_before, "names": names, "same_errors": same, "dir": sorted(set(hwsim.__all__) - set(dir(hwsim))),
                  "cpu": hwsim.cpu.__name__, "version": hwsim.__version__, "torch": "torch" in sys.modules}))
""")
    assert got["before"] == []  # nothing but the package itself until a name is used
    assert got["same_errors"] and got["dir"] == []
    assert got["names"]["simulate"] == got["names"]["fit"] == got["names"]["sweep"] == "function"
    assert got["names"]["as_graph"] == got["names"]["load_preset"] == "function"
    assert got["names"]["HwsimError"] == got["names"]["Report"] == got["names"]["Result"] == "type"
    assert got["names"]["__version__"] == "str" and got["version"]
    assert got["cpu"] == "hwsim.cpu"
    assert not got["torch"]


def test_unknown_names_still_raise_attribute_error():
    import hwsim
    import mapping

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hwsim.nope  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mapping.nope  # noqa: B018
    assert not hasattr(hwsim, "nope")


@pytest.mark.subprocess
def test_mapping_trace_stays_the_function_after_its_submodule_is_imported():
    got = _fresh("""
import json, sys
import mapping
before = "torch" in sys.modules
import mapping.trace
from mapping.trace import Tracer
import nets
print(json.dumps({"before": before, "callable": callable(mapping.trace), "name": mapping.trace.__name__,
                  "module": sys.modules["mapping.trace"].__name__}))
""")
    assert got == {"before": False, "callable": True, "name": "trace", "module": "mapping.trace"}
