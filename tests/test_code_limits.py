"""Size limits of the library code (issue 19, docs/contributing.md "Size limits"): no file of ``hwsim/``,
``mapping/`` or ``nets/`` over 500 lines, no function over 80 lines.

The tree is read when the tests run (``ast``), so a file that grows past a limit fails at once. Today's
offenders are listed below by name, each with "to split": the list can only shrink, because a listed entry
that no longer exceeds its limit fails too (remove it from the list). Numba kernels (one loop nest the compiler
sees whole) and the LLVM micro-kernel generator may exceed the function limit for good.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hwsim", "mapping", "nets")
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80

# Today's offenders (read from the tree on 2026-12-07, while other changes were under way): to split, then remove
# the entry.
FILES_TO_SPLIT: frozenset[str] = frozenset()
FUNCTIONS_TO_SPLIT: frozenset[str] = frozenset()
# Exceptions for good (the issue allows them): a function compiled by Numba (decorated with one of these), and
# the generator of the LLVM IR micro-kernel, which writes one kernel's IR top to bottom.
NUMBA_DECORATORS = frozenset({"njit", "jit", "vectorize", "guvectorize", "stencil", "cfunc"})
FUNCTIONS_ALLOWED = frozenset({"hwsim/kernels/_microkernel.py::make_microkernel"})


def library_files(root: Path = ROOT) -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (root / pkg).rglob("*.py") if "__pycache__" not in p.parts)


def _decorator_name(node: ast.expr) -> str:
    """``njit`` for ``@njit``, ``@numba.njit`` and ``@njit(cache=True)``."""
    if isinstance(node, ast.Call):
        node = node.func
    return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> dict[str, int]:
    """Qualified name -> lines (``def`` line to last line, decorators left out) of every function or method over
    ``limit`` lines, nested ones included; Numba kernels left out."""
    out: dict[str, int] = {}

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                is_kernel = any(_decorator_name(d) in NUMBA_DECORATORS for d in child.decorator_list)
                lines = child.end_lineno - child.lineno + 1
                if not isinstance(child, ast.ClassDef) and lines > limit and not is_kernel:
                    out[name] = lines
                walk(child, name + ".")
            else:
                walk(child, prefix)

    walk(ast.parse(source), "")
    return out


def _rel(path: Path, root: Path = ROOT) -> str:
    return path.relative_to(root).as_posix()


def file_lines(root: Path = ROOT) -> dict[str, int]:
    return {_rel(p, root): len(p.read_text().splitlines()) for p in library_files(root)}


def function_lines(root: Path = ROOT) -> dict[str, int]:
    return {f"{_rel(p, root)}::{name}": n for p in library_files(root)
            for name, n in long_functions(p.read_text()).items()}


def test_no_library_file_over_the_limit():
    over = {f: n for f, n in file_lines().items() if n > MAX_FILE_LINES and f not in FILES_TO_SPLIT}
    assert not over, (f"library files over {MAX_FILE_LINES} lines (split them by job): "
                      + ", ".join(f"{f} ({n})" for f, n in sorted(over.items())))


def test_no_function_over_the_limit():
    allowed = FUNCTIONS_TO_SPLIT | FUNCTIONS_ALLOWED
    over = {f: n for f, n in function_lines().items() if f not in allowed}
    assert not over, (f"functions over {MAX_FUNCTION_LINES} lines (split them): "
                      + ", ".join(f"{f} ({n})" for f, n in sorted(over.items())))


def test_the_to_split_lists_only_shrink():
    """A listed offender that was split (or removed) must leave the list, so that it cannot grow back unseen."""
    files, functions = file_lines(), function_lines()
    done = sorted(f for f in FILES_TO_SPLIT if files.get(f, 0) <= MAX_FILE_LINES)
    done += sorted(f for f in FUNCTIONS_TO_SPLIT if f not in functions)
    assert not done, "within the limits now, remove from the lists in tests/test_code_limits.py: " + ", ".join(done)


def test_the_checker_measures_functions_methods_and_leaves_out_numba_kernels(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(85))
    source = (f"import numba\nfrom numba import njit\n\ndef long():\n{body}\n\ndef short():\n    return 1\n\n"
              f"class C:\n    def method(self):\n{body.replace('    ', '        ')}\n\n"
              f"@njit(cache=True)\ndef kernel():\n{body}\n\n@numba.njit\ndef kernel2():\n{body}\n\n"
              f"def outer():\n    def inner():\n{body.replace('    ', '        ')}\n    return inner\n")
    assert long_functions(source) == {"long": 86, "C.method": 86, "outer": 88, "outer.inner": 86}
    assert long_functions("def f():\n" + "\n".join(f"    y = {i}" for i in range(79))) == {}  # exactly 80: allowed
    (tmp_path / "hwsim").mkdir()
    (tmp_path / "hwsim" / "big.py").write_text("x = 1\n" * (MAX_FILE_LINES + 1))
    (tmp_path / "hwsim" / "small.py").write_text("x = 1\n" * MAX_FILE_LINES)
    assert file_lines(tmp_path) == {"hwsim/big.py": MAX_FILE_LINES + 1, "hwsim/small.py": MAX_FILE_LINES}
    with pytest.raises(SyntaxError):  # a file that does not parse is an error, never skipped
        long_functions("def f(:\n")
