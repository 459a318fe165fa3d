"""The "what imports" catalogue (benchmarks/bench_import_patterns.py) stays runnable: a few representative patterns
through the bench's own row function, each with the status the results table records."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_import_patterns as bench  # noqa: E402
from _import_patterns import CATEGORIES, catalogue  # noqa: E402

PATTERNS = {p.name: p for p in catalogue()}


def test_catalogue_covers_every_category_with_unique_names():
    pats = catalogue()
    assert len(PATTERNS) == len(pats) >= 100
    assert {p.category for p in pats} == set(CATEGORIES)


@pytest.mark.parametrize("name, torch_status, batch2_status", [
    ("Conv2d grouped (g=4)", "imports", "imports"),
    ("SELU", "imports", "imports"),
    ("causal mask: masked_fill -inf then softmax", "imports", "imports"),
    ("torch.round", "imports", "imports"),
    ("x.half().float() (fp16 rounding)", "refused", "refused"),
    ("cumsum", "refused", "refused"),
])
def test_torch_path_status(name, torch_status, batch2_status):
    row = bench.run_pattern(PATTERNS[name], onnx=False)
    assert row["torch"]["status"] == torch_status, row
    assert row["torch_batch2"]["status"] == batch2_status, row
    if torch_status == "imports":
        assert row["torch"]["rel_error"] <= bench.REL_TOL
    else:
        assert row["torch"]["reason"].startswith("UnsupportedOpError: ")


def test_sequence_first_pattern_runs_batch_1_only():
    row = bench.run_pattern(PATTERNS["LSTM sequence-first (L, B, F)"], onnx=False)
    assert row["torch_batch2"] is None
    assert row["torch"]["status"] == "refused" and "batch_first=True" in row["torch"]["reason"]


def test_onnx_path_tells_hwsim_from_the_exporter():
    row = bench.run_pattern(PATTERNS["Softplus beta 2 threshold 5"])
    assert row["torch"]["status"] == "imports"
    # torch.onnx drops Softplus's threshold: onnxruntime on the file differs from torch as much as hwsim does
    assert row["onnx"]["status"] == "export differs" and row["onnx"]["onnxruntime_rel_error"] > bench.REL_TOL
    row = bench.run_pattern(PATTERNS["nn.ChannelShuffle"])
    assert row["onnx"]["status"] == "export fails"


def test_rel_error_counts_shapes_and_non_finite_positions():
    import numpy as np
    import torch

    ref = torch.tensor([[1.0, float("nan"), 3.0]])
    assert bench.rel_error(np.array([[1.0, np.nan, 3.0]]), ref) == 0.0
    assert bench.rel_error(np.array([[1.0, 2.0, 3.0]]), ref) == float("inf")
    assert bench.rel_error(np.array([1.0, np.nan, 3.0]), ref) == float("inf")  # same values, another shape
