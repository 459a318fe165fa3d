"""The identity-keyed cache helper (hwsim.cache) and the caches built on it."""
from __future__ import annotations

import gc
import threading
import weakref

import numpy as np
import pytest

from hwsim.cache import IdentityCache, caches, clear_caches, identity_cache


class Obj:
    """Equal by value, distinct by identity (and weak-referenceable)."""

    def __init__(self, v):
        self.v = v

    def __eq__(self, other):
        return isinstance(other, Obj) and other.v == self.v

    __hash__ = None


def test_values_are_kept_per_object_identity_and_extras():
    c = IdentityCache("test", maxsize=8)
    calls = []

    def compute(o, k):
        calls.append((o.v, k))
        return (o.v, k, len(calls))

    a, b = Obj(1), Obj(1)  # equal, not the same object
    first = c.get(a, "x", compute=lambda: compute(a, "x"))
    assert c.get(a, "x", compute=lambda: compute(a, "x")) is first
    assert c.get(b, "x", compute=lambda: compute(b, "x")) != first  # another object: computed again
    assert c.get(a, "y", compute=lambda: compute(a, "y"))[1] == "y"  # another extra: computed again
    assert calls == [(1, "x"), (1, "x"), (1, "y")]
    assert (c.hits, c.misses, len(c)) == (1, 3, 3)


def test_least_recently_used_entries_go_first():
    c = IdentityCache("test", maxsize=2)
    objs = [Obj(i) for i in range(3)]
    for o in objs[:2]:
        c.get(o, compute=lambda o=o: o.v)
    c.get(objs[0], compute=lambda: pytest.fail("a hit must not compute"))  # objs[0] is now the most recent
    c.get(objs[2], compute=lambda: 2)  # evicts objs[1], the least recently used
    assert len(c) == 2
    seen = []
    c.get(objs[1], compute=lambda: seen.append(1) or 1)
    assert seen == [1]


def test_an_entry_holds_its_object_so_its_id_is_never_reused_while_cached():
    c = IdentityCache("test", maxsize=4)
    o = Obj(5)
    ref = weakref.ref(o)
    c.get(o, compute=lambda: "v")
    del o
    gc.collect()
    assert ref() is not None  # still alive: no new object can take its address while the entry lives
    c.clear()
    gc.collect()
    assert ref() is None and len(c) == 0


def test_decorator_keys_on_the_first_argument_and_the_others_by_value():
    calls = []

    @identity_cache(maxsize=4)
    def scaled(arr, factor, *, offset=0.0):
        calls.append((factor, offset))
        return arr * factor + offset

    x = np.arange(3.0)
    y = scaled(x, 2.0, offset=1.0)
    assert scaled(x, 2.0, offset=1.0) is y
    np.testing.assert_array_equal(scaled(x, 3.0), x * 3.0)
    np.testing.assert_array_equal(scaled(x.copy(), 2.0, offset=1.0), y)  # an equal new array: computed again
    assert calls == [(2.0, 1.0), (3.0, 0.0), (2.0, 1.0)]
    assert scaled.__name__ == "scaled" and scaled.cache in caches()
    with pytest.raises(TypeError):  # the extras are keys: they must be hashable
        scaled(x, [2.0])


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, None])
def test_a_bad_size_is_refused(bad):
    with pytest.raises(ValueError, match="maxsize"):
        IdentityCache("bad", maxsize=bad)


def test_clear_caches_empties_every_cache_and_values_come_back_equal():
    import nets
    from hwsim.api import as_graph
    from mapping.passes.fold_bn import fold_bn_cached

    g = as_graph(nets.get("resnet20"), (1, 3, 32, 32))
    folded = fold_bn_cached(g)
    assert fold_bn_cached(g) is folded and fold_bn_cached.cache in caches()
    mine = IdentityCache("mine", maxsize=2)
    mine.get(g, compute=lambda: 1)
    clear_caches()
    assert len(fold_bn_cached.cache) == 0 and len(mine) == 0
    again = fold_bn_cached(g)
    assert again is not folded
    assert [n.name for n in again.nodes] == [n.name for n in folded.nodes]
    assert all(np.array_equal(again.params[k], folded.params[k]) for k in folded.params)


def test_threads_share_one_cache_safely():
    c = IdentityCache("threads", maxsize=8)
    objs = [Obj(i) for i in range(16)]
    errors = []

    def work(seed):
        rng = np.random.default_rng(seed)
        for i in rng.integers(0, len(objs), 400):
            o = objs[int(i)]
            if c.get(o, "k", compute=lambda o=o: o.v * 10) != o.v * 10:
                errors.append(o.v)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(c) <= 8 and c.hits + c.misses == 1600


def test_the_helper_imports_only_the_standard_library():
    """Every layer uses it (mapping's passes included), so it must stay a leaf: no project module, no torch/numpy."""
    import ast
    import sys
    from pathlib import Path

    import hwsim.cache

    tree = ast.parse(Path(hwsim.cache.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported and imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


@pytest.mark.subprocess
def test_importing_the_helper_loads_no_torch():
    import json
    import subprocess
    import sys

    code = ("import sys, json, hwsim.cache; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'mapping'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
