"""pareto_front against a brute-force O(n²) dominance check."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.codesign import pareto_front
from hwsim.errors import HwsimError


def brute_force(df: pd.DataFrame, objectives: dict[str, str]) -> set[int]:
    """Indices of rows no other row dominates (>= as good everywhere, strictly better somewhere)."""
    keep = set()
    for i, a in df.iterrows():
        dominated = False
        for j, b in df.iterrows():
            if i == j:
                continue
            better_eq = all((b[c] <= a[c]) if d == "min" else (b[c] >= a[c]) for c, d in objectives.items())
            strictly = any((b[c] < a[c]) if d == "min" else (b[c] > a[c]) for c, d in objectives.items())
            if better_eq and strictly:
                dominated = True
                break
        if not dominated:
            keep.add(i)
    return keep


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 4), st.integers(0, 2**31 - 1), st.booleans())
def test_front_matches_brute_force(n, m, seed, few_values):
    rng = np.random.default_rng(seed)
    # few distinct values: many ties and duplicates, the hard cases for a sort-based front
    vals = rng.integers(0, 3, size=(n, m)) if few_values else rng.standard_normal((n, m))
    cols = [f"o{i}" for i in range(m)]
    df = pd.DataFrame(vals, columns=cols)
    dirs = {c: ("max" if rng.random() < 0.5 else "min") for c in cols}
    got = pareto_front(df, dirs)
    assert set(got.index) == brute_force(df, dirs)
    assert list(got.index) == sorted(got.index)  # in the table's order


def test_list_means_minimise_and_errors_and_nan_rows_are_not_candidates():
    df = pd.DataFrame({"lat": [1.0, 2.0, 0.5, np.nan, 0.1], "en": [3.0, 1.0, 5.0, 0.0, 0.0],
                       "error": ["", "", "", "", "boom"]})
    got = pareto_front(df, ["lat", "en"])
    assert list(got.index) == [0, 1, 2]


def test_bad_objectives_are_clear_errors():
    df = pd.DataFrame({"lat": [1.0]})
    with pytest.raises(HwsimError, match="energy"):
        pareto_front(df, ["energy"])
    with pytest.raises(HwsimError, match="min' or 'max"):
        pareto_front(df, {"lat": "smallest"})
    with pytest.raises(HwsimError, match="at least one"):
        pareto_front(df, [])


def test_accuracy_is_maximised_when_named_without_a_direction():
    from hwsim.codesign.pareto import normalize_objectives

    df = pd.DataFrame({"energy_j": [1.0, 2.0, 3.0, 1.0], "accuracy": [0.5, 0.9, 0.8, 0.2],
                       "top1_agreement": [1.0, 1.0, 1.0, 1.0]})
    assert normalize_objectives(["energy_j", "accuracy", "top1_agreement"]) == {
        "energy_j": "min", "accuracy": "max", "top1_agreement": "max"}
    # (1.0, 0.5) and (2.0, 0.9) are the front; (3.0, 0.8) loses to (2.0, 0.9), (1.0, 0.2) to (1.0, 0.5)
    assert list(pareto_front(df, ["energy_j", "accuracy"]).index) == [0, 1]
    assert set(pareto_front(df, ["energy_j", "accuracy"]).index) == brute_force(df, {"energy_j": "min",
                                                                                     "accuracy": "max"})
    assert list(pareto_front(df, {"energy_j": "min", "accuracy": "min"}).index) == [3]  # an explicit direction wins


def test_non_table_non_numeric_column_and_missing_objectives_are_one_line_errors():
    df = pd.DataFrame({"lat": [1.0, 2.0], "name": ["a", "b"], "mixed": [1.0, None]})
    for call, match in [(lambda: pareto_front([{"lat": 1.0}], ["lat"]), "needs a pandas DataFrame, got list"),
                        (lambda: pareto_front(df, None), "objectives must be .* got NoneType"),
                        (lambda: pareto_front(df, 3), "got int"),
                        (lambda: pareto_front(df, ["lat", "name"]), "column 'name' is not numeric \\(value 'a'\\)")]:
        with pytest.raises(HwsimError, match=match) as e:
            call()
        assert "\n" not in str(e.value)
    assert list(pareto_front(df, ["lat", "mixed"]).index) == [0]  # None is a missing value, not an error


def test_area_is_nan_where_a_target_does_not_model_it_and_leaves_the_front():
    """CPU and FPGA reports model no chip area: NaN (0.0 read as "no area" and won an area front), and a front
    over area keeps only the rows that have one."""
    import math

    import pandas as pd

    import hwsim
    from hwsim.codesign import pareto_front

    cpu = hwsim.simulate("tfc-w1a1", "cpu/host").report
    fpga = hwsim.simulate("tfc-w1a1", "fpga/pynq-z1").report
    imc = hwsim.simulate("tfc-w1a1", "imc/isaac").report
    assert math.isnan(cpu.area_mm2) and math.isnan(fpga.area_mm2) and imc.area_mm2 > 0
    df = pd.DataFrame([{"t": r.target, "area_mm2": r.area_mm2, "latency_s": r.latency_s} for r in (cpu, fpga, imc)])
    assert pareto_front(df, {"area_mm2": "min", "latency_s": "min"})["t"].tolist() == ["imc"]
