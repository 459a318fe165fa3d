"""Import coverage: every torchvision classification builder and a broad set of timm families, through hwsim.

For each model (random weights, seed 0, eval mode, its default input size, batch 1):

1. **torch**: ``mapping.trace`` with verification (fx, or torch.export when fx cannot trace or leaves an op opaque);
   records which front end produced the graph, or the refusal (its exception type and one-line reason).
   All-zero weight matrices (torchvision's ViT heads) get random values first, so no comparison is vacuous.
2. **simulate**: ``hwsim.simulate(graph, "cpu/cortex-a72", x=x)`` on a fresh input (seed 1, not the trace's
   sample): relative error ``||y - y_torch|| / ||y_torch||`` of the outputs; ``hwsim.simulate(graph, "imc/isaac")``
   cost-only latency (must be finite and positive).
3. **ONNX**: ``torch.onnx.export(..., dynamo=False)`` to a temporary file, ``mapping.from_onnx`` with verification,
   the same relative error (``--no-onnx`` skips it).

A row is *wrong* when a model imports but its outputs differ from torch's by more than 1e-4 relative: the target
is zero such rows. Results: ``benchmarks/results/import_coverage.json`` (every row, the machine) and
``import_coverage.md`` (the table the docs quote). Usage::

    python benchmarks/bench_import_coverage.py [--only NAME ...] [--update] [--no-onnx] [--out benchmarks/results]

``--update`` reruns only the ``--only`` models and replaces their rows in the existing results file.
"""
from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import platform
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import torch

import hwsim
import mapping  # noqa: F401 - loads mapping.trace
from nets.external import TIMM_MODELS, build_timm, build_torchvision, torchvision_classifiers

REL_TOL = 1e-4
tr = sys.modules["mapping.trace"]  # the module (mapping.trace the attribute is the function)
_FRONTEND: list[str] = []


def _counting_export(orig):
    def export(model, x):
        _FRONTEND.append("torch.export")
        return orig(model, x)
    return export


def _rel(y, ref) -> float:
    ys = y if isinstance(y, list) else [y]
    refs = ref if isinstance(ref, (list, tuple)) else [ref]
    num = sum(float(np.sum((np.asarray(a, np.float64) - b.detach().numpy().astype(np.float64)) ** 2))
              for a, b in zip(ys, refs))
    den = sum(float(np.sum(b.detach().numpy().astype(np.float64) ** 2)) for b in refs)
    return float(np.sqrt(num / max(den, 1e-300)))


def _reason(e: BaseException) -> str:
    s = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {s[:240]}"


def _onnx_row(model, x: torch.Tensor, ref) -> dict:
    from mapping import from_onnx

    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    if weight_bytes > 2**31 - 2**26:  # a single ONNX protobuf holds at most 2 GB
        return {"onnx": "not exported", "onnx_reason": f"{weight_bytes / 2**30:.1f} GiB of weights exceed ONNX's "
                                                       "2 GB protobuf limit"}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.onnx"
        try:
            fast = torch.backends.mha.get_fastpath_enabled()
            torch.backends.mha.set_fastpath_enabled(False)  # the fused MHA kernel has no ONNX export
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17)
            torch.backends.mha.set_fastpath_enabled(fast)
        except Exception as e:
            return {"onnx": "export failed", "onnx_reason": _reason(e)}
        try:
            g = from_onnx(str(path))
        except hwsim.HwsimError as e:
            return {"onnx": "refused", "onnx_reason": _reason(e)}
        y = hwsim.simulate(g, "cpu/cortex-a72", x=x.numpy()).outputs
        return {"onnx": "imports", "onnx_rel_error": _rel(y, ref)}


def _no_zero_weights(model: torch.nn.Module) -> int:
    """Give every all-zero weight matrix random values (N(0, 0.02)): torchvision's ViT heads start at zero, and an
    all-zero output would make the comparison with torch vacuous. Returns how many tensors it changed."""
    changed = 0
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2 and not torch.any(p):
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
                changed += 1
    return changed


def run_one(source: str, name: str, onnx: bool) -> dict:
    row = {"source": source, "model": name}
    t0 = time.perf_counter()
    try:
        model, shape = (build_torchvision if source == "torchvision" else build_timm)(name)
    except Exception as e:
        return {**row, "torch": "build failed", "reason": _reason(e)}
    row["input_shape"] = list(shape)
    row["zero_weights_randomized"] = _no_zero_weights(model)
    _FRONTEND.clear()
    try:
        graph = tr.trace(model, shape)
    except hwsim.HwsimError as e:
        row.update(torch="refused", reason=_reason(e), frontend="")
    else:
        row.update(torch="imports", frontend=_FRONTEND[-1] if _FRONTEND else "torch.fx", nodes=len(graph.nodes),
                   batch_fixed=graph.batch_fixed)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal(shape).astype(np.float32))
    with torch.no_grad():
        ref = model(x)
    if row["torch"] == "imports":
        y = hwsim.simulate(graph, "cpu/cortex-a72", x=x.numpy())
        row["rel_error"] = _rel(y.outputs, ref)
        row["cpu_latency_s"] = y.report.latency_s
        row["imc_latency_s"] = hwsim.simulate(graph, "imc/isaac").report.latency_s
    if onnx:
        row.update(_onnx_row(model, x, ref))
    row["seconds"] = round(time.perf_counter() - t0, 1)
    del model
    gc.collect()
    return row


def wrong(row: dict) -> bool:
    return any(row.get(k, 0.0) > REL_TOL or row.get(k) != row.get(k) for k in ("rel_error", "onnx_rel_error"))


def table(rows: list[dict]) -> str:
    lines = ["| source | model | torch import | rel. error | ONNX import | rel. error | refusal reason |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        tor = r["torch"] + (f" ({r['frontend']})" if r.get("frontend") else "")
        err = f"{r['rel_error']:.1e}" if "rel_error" in r else ""
        oerr = f"{r['onnx_rel_error']:.1e}" if "onnx_rel_error" in r else ""
        why = (r.get("reason") or r.get("onnx_reason") or "").replace("|", "/")
        lines.append(f"| {r['source']} | {r['model']} | {tor} | {err} | {r.get('onnx', '')} | {oerr} | {why} |")
    return "\n".join(lines)


def summary(rows: list[dict]) -> dict:
    n = len(rows)
    ok = sum(r["torch"] == "imports" and not wrong(r) for r in rows)
    out = {"models": n, "torch_imports_exactly": ok, "torch_import_fraction": ok / n if n else 0.0,
           "wrong_answers": sum(wrong(r) for r in rows)}
    if any("onnx" in r for r in rows):
        out["onnx_imports_exactly"] = sum(r.get("onnx") == "imports" and not wrong(r) for r in rows)
    for src in ("torchvision", "timm"):
        sub = [r for r in rows if r["source"] == src]
        out[f"{src}_imports_exactly"] = f"{sum(r['torch'] == 'imports' and not wrong(r) for r in sub)}/{len(sub)}"
    return out


def _init_worker() -> None:
    torch.set_num_threads(1)
    tr._export_module = _counting_export(tr._export_module)
    warnings.simplefilter("ignore")


def _pool() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", default=None, help="model names (substrings) to run")
    ap.add_argument("--no-onnx", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--update", action="store_true", help="replace only the rows run now in the existing results file")
    a = ap.parse_args(argv)
    todo = [("torchvision", m) for m in torchvision_classifiers()] + [("timm", m) for m in TIMM_MODELS]
    if a.only:
        todo = [(s, m) for s, m in todo if any(o in m for o in a.only)]
    rows = []
    pool = _pool()
    for i, (src, name) in enumerate(todo, 1):
        try:  # one model at a time in a worker process: a model that exhausts the memory loses only its row
            row = pool.submit(run_one, src, name, not a.no_onnx).result()
        except BrokenProcessPool:
            row = {"source": src, "model": name, "torch": "crashed",
                   "reason": "the worker process died (out of memory?)"}
            pool = _pool()
        rows.append(row)
        print(f"[{i}/{len(todo)}] {src}/{name}: {row['torch']} {row.get('rel_error', '')} "
              f"{row.get('onnx', '')} {row.get('onnx_rel_error', '')} {row.get('reason', row.get('onnx_reason', ''))}"
              f" ({row.get('seconds', '')} s)", flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.update and (out / "import_coverage.json").is_file():
        new = {(r["source"], r["model"]): r for r in rows}
        old = json.loads((out / "import_coverage.json").read_text())["rows"]
        rows = [new.pop((r["source"], r["model"]), r) for r in old] + list(new.values())
    import timm
    import torchvision
    meta = {"cpu": platform.processor() or platform.machine(), "python": sys.version.split()[0],
            "torch": torch.__version__, "torchvision": torchvision.__version__, "timm": timm.__version__,
            "rel_tolerance": REL_TOL}
    res = {"meta": meta, "summary": summary(rows), "rows": rows}
    (out / "import_coverage.json").write_text(json.dumps(res, indent=1))
    (out / "import_coverage.md").write_text(
        f"Import coverage ({meta['torch']}, torchvision {meta['torchvision']}, timm {meta['timm']}): "
        f"{json.dumps(res['summary'])}\n\n" + table(rows) + "\n")
    print(json.dumps(res["summary"], indent=1))
    print(f"wrote {out / 'import_coverage.json'} and {out / 'import_coverage.md'}")


if __name__ == "__main__":
    main()
