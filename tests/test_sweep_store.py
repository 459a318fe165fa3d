"""The results file: rows round-trip exactly, and a file cut at any byte (a kill mid-write) loads as
the rows written before the cut — never a corrupted or partial row."""
from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.codesign.store import ResultsStore

values = st.one_of(st.floats(allow_nan=False, width=64), st.integers(-2**40, 2**40), st.booleans(),
                   st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["a", "b", "c"]), values, max_size=3), min_size=1, max_size=8),
       st.floats(0, 1))
def test_cut_file_loads_a_prefix_of_whole_rows(tmp_path_factory, rows, cut_frac):
    path = tmp_path_factory.mktemp("store") / "r.csv"
    store = ResultsStore(path)
    rows = [dict(r, key=f"k{i}", error="") for i, r in enumerate(rows)]
    store.append(rows[:1])  # header and columns settle with the first rows ...
    store.append(rows[1:])
    store.finalize()
    full = store.load()
    assert list(full["key"]) == [r["key"] for r in rows]
    for r, (_, got) in zip(rows, full.iterrows()):
        for k, v in r.items():
            g = got[k]
            if isinstance(v, float) and not isinstance(v, bool):
                assert float(g) == v or (math.isinf(v) and float(g) == v)  # floats round-trip exactly
    data = path.read_bytes()
    header_end = data.index(b"\n") + 1
    cut = header_end + int(cut_frac * (len(data) - header_end))
    path.write_bytes(data[:cut])  # ... then a kill cuts the appended rows anywhere
    whole_lines = data[header_end:cut].count(b"\n")
    got = ResultsStore(path).load()
    keys = list(got["key"]) if len(got) else []
    assert keys == [r["key"] for r in rows[:whole_lines]]
