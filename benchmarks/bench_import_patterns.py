"""What imports: ~230 small hand-written patterns (one layer or op each, ``benchmarks/_import_patterns.py``) through
hwsim's two front doors, each checked against torch.

For each pattern (weights from seed 0, eval mode, input N(0, 1) from seed 1, batch 1; batch 2 from seed 2 where the
pattern allows it):

1. **torch**: ``hwsim.as_graph(model, shape)`` (``mapping.trace`` with verification: what ``hwsim.simulate(model,
   ...)`` does first) at batch 1, then ``hwsim.simulate(graph, "cpu/host", x=x)`` at batch 1 and at batch 2 (the
   batch-1 graph; a graph the tracer marked ``batch_fixed`` is traced again at batch 2). Compared with ``model(x)``.
2. **ONNX**: ``torch.onnx.export(model, x, f, dynamo=False, opset_version=17)``, then ``hwsim.simulate(f,
   "cpu/host", x=x)``, compared with ``model(x)``; batch 2 from a file exported at batch 2 (the exporter writes
   static shapes). "export fails" is torch's refusal, not
   hwsim's.

Each attempt is one of: ``imports`` (relative error ``||y - y_torch|| / ||y_torch||`` at most 1e-4, shapes equal),
``refused`` (a ``hwsim.HwsimError``: its class and the first line of its message), ``WRONG`` (imported, but the
outputs or their shapes differ: a bug), ``crashed`` (any other exception from hwsim: a bug, its class, message and the frame it
came from); on the ONNX path also ``export differs`` (hwsim's outputs differ from torch's, and so do onnxruntime's on
the same file: torch.onnx exported another function than the model). Every pattern runs in a try/except, so one failure never stops the run. Results:
``benchmarks/results/import_patterns.json`` (every row, the versions, the machine) and ``import_patterns.md``
(a table per category). Usage::

    python benchmarks/bench_import_patterns.py [--only SUBSTRING ...] [--no-onnx] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import hwsim

sys.path.insert(0, str(Path(__file__).parent))
from _import_patterns import CATEGORIES, Pattern, catalogue  # noqa: E402

SPEC = "cpu/host"
REL_TOL = 1e-4


def _flat(out: Any) -> list[np.ndarray]:
    if isinstance(out, (list, tuple)):
        return [a for o in out for a in _flat(o)]
    return [out.detach().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)]


def shapes_differ(ys: list[np.ndarray], refs: list[np.ndarray]) -> str:
    """Empty when ``ys`` has torch's shapes, else both lists of shapes."""
    if len(ys) == len(refs) and all(np.shape(a) == np.shape(b) for a, b in zip(ys, refs)):
        return ""
    return f"shapes {[np.shape(a) for a in ys]}, torch's {[np.shape(b) for b in refs]}"


def rel_error(y: Any, ref: Any, shapes: bool = True) -> float:
    """``||y - ref|| / ||ref||`` over all outputs, in float64; inf when the shapes (``shapes``; else the sizes) or
    the non-finite positions differ."""
    ys, refs = _flat(y), _flat(ref)
    if shapes and shapes_differ(ys, refs) or len(ys) != len(refs) or any(
            np.size(a) != np.size(b) for a, b in zip(ys, refs)):
        return float("inf")
    num = den = 0.0
    for a, b in zip(ys, refs):
        a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
        fa, fb = np.isfinite(a), np.isfinite(b)
        if np.any(fa != fb) or np.any(a[~fa] != b[~fb]) and not np.all(np.isnan(a[~fa]) & np.isnan(b[~fb])):
            return float("inf")
        num += float(np.sum((a[fa] - b[fb]) ** 2))
        den += float(np.sum(b[fb] ** 2))
    return float(np.sqrt(num / den)) if den > 0 else (0.0 if num == 0 else float("inf"))


def _reason(e: BaseException) -> str:
    s = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {s[:240]}"


def _where(e: BaseException) -> str:
    """The innermost frame of an unexpected exception, as ``file:line``, relative to the repository."""
    tb = traceback.extract_tb(e.__traceback__)
    if not tb:
        return ""
    f = tb[-1]
    return f"{f.filename.split('/main/')[-1]}:{f.lineno}"


def attempt(run: Callable[[], Any], ref: Any) -> dict:
    """One simulation compared with torch's reference output: a status and its error or reason."""
    try:
        y = run()
    except hwsim.HwsimError as e:
        return {"status": "refused", "reason": _reason(e)}
    except Exception as e:  # anything else from hwsim is a bug: keep its class, message and where it came from
        return {"status": "crashed", "reason": f"{_reason(e)} (at {_where(e)})"}
    err = rel_error(y, ref)
    if err <= REL_TOL:
        return {"status": "imports", "rel_error": err}
    shape = shapes_differ(_flat(y), _flat(ref))
    if shape:  # the values in memory order, for the report: a shape-only difference or different numbers
        shape += f" (values in memory order: relative error {rel_error(y, ref, shapes=False):.1e})"
    return {"status": "WRONG", "rel_error": err, "reason": shape or f"outputs differ from torch's by {err:.1e}"}


def _torch_path(model, x1, ref1, x2, ref2) -> tuple[dict, dict | None]:
    graph: list = []

    def trace_and_run():
        graph.append(hwsim.as_graph(model, x1.shape))
        return hwsim.simulate(graph[0], SPEC, x=x1).outputs
    b1 = attempt(trace_and_run, ref1)
    if x2 is None:
        return b1, None
    if not graph:
        return b1, {"status": b1["status"], "reason": "as batch 1"}
    if graph[0].batch_fixed:
        b2 = attempt(lambda: hwsim.simulate(model, SPEC, x=x2).outputs, ref2)
        return b1, {**b2, "note": "batch_fixed at batch 1: traced again at batch 2"}
    return b1, attempt(lambda: hwsim.simulate(graph[0], SPEC, x=x2).outputs, ref2)


def _export(model, x: np.ndarray, path: str) -> dict | None:
    """``torch.onnx.export`` at ``x``'s (static) shape; None when done, else the ``export fails`` result."""
    fast = torch.backends.mha.get_fastpath_enabled()
    try:
        torch.backends.mha.set_fastpath_enabled(False)  # the fused MHA kernel has no ONNX export
        torch.onnx.export(model, (torch.from_numpy(x),), path, dynamo=False, opset_version=17)
    except Exception as e:
        return {"status": "export fails", "reason": _reason(e)}
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
    return None


def _onnx_path(model, x1, ref1, x2, ref2, folder: str) -> tuple[dict, dict | None]:
    """Each batch from its own file, exported at that batch (torch.onnx writes static shapes)."""
    def one(x, ref, path):
        failed = _export(model, x, path)
        return failed or _export_checked(attempt(lambda: hwsim.simulate(path, SPEC, x=x).outputs, ref), path, x, ref)
    b1 = one(x1, ref1, str(Path(folder) / "m1.onnx"))
    return b1, (one(x2, ref2, str(Path(folder) / "m2.onnx")) if x2 is not None else None)


def _export_checked(res: dict, path: str, x: np.ndarray, ref: Any) -> dict:
    """A WRONG result of the ONNX path is hwsim's only where onnxruntime, on the same file, agrees with torch; where it
    does not, torch.onnx exported another function than the model: ``export differs``, with both errors."""
    if res["status"] != "WRONG":
        return res
    import onnx
    import onnxruntime

    try:
        model = onnx.load(path)
        model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"  # let onnxruntime take batch 2 too
        sess = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        ort_err = rel_error(sess.run(None, {sess.get_inputs()[0].name: x}), ref)
    except Exception:  # a batch the file does not take: leave the row as WRONG, to be looked at
        return res
    if ort_err <= REL_TOL:
        return res
    return {"status": "export differs", "rel_error": res["rel_error"], "onnxruntime_rel_error": ort_err,
            "reason": f"torch.onnx's file is not the model: onnxruntime on it differs from torch by {ort_err:.1e}"}


def run_pattern(p: Pattern, onnx: bool = True) -> dict:
    """One row of the table: the torch path and (``onnx``) the ONNX path of pattern ``p``, batch 1 and batch 2."""
    t0 = time.perf_counter()
    row: dict = {"category": p.category, "pattern": p.name, "input_shape": list(p.shape)}
    if p.note:
        row["note"] = p.note
    torch.manual_seed(0)
    x1 = np.random.default_rng(1).standard_normal(p.shape).astype(np.float32)
    x2 = np.random.default_rng(2).standard_normal((2, *p.shape[1:])).astype(np.float32) if p.batch2 else None
    try:
        model = p.build().eval()
        with torch.no_grad():
            ref1 = model(torch.from_numpy(x1))
            ref2 = model(torch.from_numpy(x2)) if x2 is not None else None
    except Exception as e:
        return {**row, "torch": {"status": "torch fails", "reason": _reason(e)}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        row["torch"], row["torch_batch2"] = _torch_path(model, x1, ref1, x2, ref2)
        if onnx:
            with tempfile.TemporaryDirectory() as d:
                row["onnx"], row["onnx_batch2"] = _onnx_path(model, x1, ref1, x2, ref2, d)
    row["seconds"] = round(time.perf_counter() - t0, 2)
    return row


def _st(r: dict | None) -> str:
    if r is None:
        return "—"
    return r["status"]


def _err(r: dict | None) -> str:
    return f"{r['rel_error']:.1e}" if r and "rel_error" in r else ""


def _why(row: dict) -> str:
    parts = []
    for key, label in (("torch", "torch"), ("torch_batch2", "torch batch 2"), ("onnx", "ONNX"),
                       ("onnx_batch2", "ONNX batch 2")):
        r = row.get(key)
        if r and r.get("reason") and r["reason"] != "as batch 1" and r["reason"] not in [p[1] for p in parts]:
            parts.append((label, r["reason"]))
    if row.get("note"):
        parts.append(("note", row["note"]))
    return "; ".join(f"{lab}: {why}" for lab, why in parts).replace("|", "/").replace("\n", " ")


def table(rows: list[dict]) -> str:
    lines = ["| pattern | input | torch import | rel. error | batch 2 | ONNX import | rel. error | ONNX batch 2 "
             "| refusal reason |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        shape = "×".join(map(str, r["input_shape"]))
        b2 = r.get("torch_batch2")
        lines.append(f"| {r['pattern']} | {shape} | {_st(r['torch'])} | {_err(r['torch'])} | "
                     f"{_st(b2) if 'torch_batch2' in r else ''} {_err(b2)} | {_st(r.get('onnx'))} | "
                     f"{_err(r.get('onnx'))} | {_st(r.get('onnx_batch2')) if 'onnx_batch2' in r else ''} "
                     f"{_err(r.get('onnx_batch2'))} | {_why(r)} |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> dict:
    def n(key, status):
        return sum(1 for r in rows if (r.get(key) or {}).get("status") == status)
    attempts = [r.get(k) for r in rows for k in ("torch", "torch_batch2", "onnx", "onnx_batch2") if r.get(k)]
    errs = [a["rel_error"] for a in attempts if a["status"] == "imports"]
    return {"patterns": len(rows), "torch_imports": n("torch", "imports"), "torch_refused": n("torch", "refused"),
            "onnx_imports": n("onnx", "imports"), "onnx_refused": n("onnx", "refused"),
            "onnx_export_fails": n("onnx", "export fails"), "onnx_export_differs": n("onnx", "export differs"),
            "refused_both": sum(1 for r in rows if r["torch"]["status"] != "imports"
                                and (r.get("onnx") or {}).get("status") != "imports"),
            "batch2_torch_imports": n("torch_batch2", "imports"), "batch2_onnx_imports": n("onnx_batch2", "imports"),
            "batch1_only": sum(1 for r in rows if "torch_batch2" in r and r["torch_batch2"] is None),
            "wrong": _patterns_with(rows, "WRONG"), "crashed": _patterns_with(rows, "crashed"),
            "max_rel_error_of_an_import": max(errs, default=0.0)}


def _patterns_with(rows: list[dict], status: str) -> int:
    return sum(any((r.get(k) or {}).get("status") == status for k in ("torch", "torch_batch2", "onnx", "onnx_batch2"))
               for r in rows)


def summary_line(s: dict) -> str:
    return (f"**{s['patterns']} patterns**: {s['torch_imports']} import through torch, {s['onnx_imports']} through "
            f"ONNX ({s['onnx_export_fails']} cannot be exported by torch.onnx, {s['onnx_export_differs']} where "
            f"the exported file computes another function than the model, by onnxruntime too), {s['refused_both']} "
            f"refused by both front doors; **{s['wrong']} with a wrong answer**, {s['crashed']} crashed (patterns with "
            f"such a result at either batch, on either path); largest relative error of an "
            f"import {s['max_rel_error_of_an_import']:.1e}. Batch 2: {s['batch2_torch_imports']} through torch, "
            f"{s['batch2_onnx_imports']} through ONNX ({s['batch1_only']} patterns are batch 1 only).")


def write(rows: list[dict], out: Path, seconds: float) -> dict:
    import numba
    import onnx
    import onnxruntime

    meta = {"cpu": platform.processor() or platform.machine(), "python": sys.version.split()[0],
            "torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "numba": numba.__version__, "hwsim": getattr(hwsim, "__version__", ""), "spec": SPEC,
            "rel_tolerance": REL_TOL, "threads": 1, "wall_seconds": round(seconds, 1),
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    s = summary(rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "import_patterns.json").write_text(json.dumps({"meta": meta, "summary": s, "rows": rows}, indent=1))
    md = [f"# What imports: {len(rows)} small patterns through hwsim's torch and ONNX front doors", "",
          f"`python benchmarks/bench_import_patterns.py` (torch {meta['torch']}, onnx {meta['onnx']}, onnxruntime "
          f"{meta['onnxruntime']}, Python {meta['python']}, {meta['date_utc']} UTC, {meta['wall_seconds']} s on one "
          f"thread). Each pattern is checked against `model(x)` on `{SPEC}`: *imports* = relative error "
          f"≤ {REL_TOL:g}; *refused* = a one-line `hwsim.HwsimError`; *WRONG* or *crashed* would be bugs.", "",
          summary_line(s), ""]
    for cat in CATEGORIES:
        sub = [r for r in rows if r["category"] == cat]
        if sub:
            md += [f"## {cat}", "", table(sub), ""]
    (out / "import_patterns.md").write_text("\n".join(md))
    return s


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", default=None, help="substrings of pattern names to run")
    ap.add_argument("--no-onnx", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = ap.parse_args(argv)
    import numba

    numba.set_num_threads(1)  # Numba's count before torch's (see hwsim.kernels)
    torch.set_num_threads(1)
    pats = [p for p in catalogue() if not a.only or any(o in p.name for o in a.only)]
    t0 = time.perf_counter()
    rows = []
    for i, p in enumerate(pats, 1):
        row = run_pattern(p, onnx=not a.no_onnx)
        rows.append(row)
        print(f"[{i}/{len(pats)}] {p.category} / {p.name}: torch {_st(row['torch'])} {_err(row['torch'])} "
              f"b2 {_st(row.get('torch_batch2'))} onnx {_st(row.get('onnx'))} {_err(row.get('onnx'))} "
              f"{_why(row)[:160]} ({row.get('seconds', '')} s)", flush=True)
    s = write(rows, Path(a.out), time.perf_counter() - t0)
    print(summary_line(s))


if __name__ == "__main__":
    main()
