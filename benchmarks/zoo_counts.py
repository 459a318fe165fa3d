"""Parameter and MAC counts of every zoo net (and every published variant) against the papers.

For each registered net at its default configuration and input shape, and for each entry of
``nets.variants.VARIANTS``, writes one CSV row with: our parameter count and conv+linear MACs
(``nets.counts``, forward hooks on the meta device), the same two figures from the IR
(``mapping.analysis.totals(mapping.trace(...))`` — an independent counter; ``ir_agrees`` says
whether both match exactly), the published figures, the relative differences in percent, the
table they come from, and the notes explaining any difference over 2 %.

Rows whose published MACs use CondenseNet's counter convention (conv/linear MACs + ReLU, pooling
and bias operations) report ``macs_compared`` under that convention; other rows compare plain MACs.

Usage::

    python benchmarks/zoo_counts.py [--out benchmarks/results/zoo_counts.csv] [--nets name1,name2]

``--nets`` recomputes only the default-configuration rows of the named nets and merges them into the
existing CSV (other rows kept as they are), so adding a net does not retrace the whole zoo.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import nets
from mapping import trace
from mapping.analysis import totals
from nets.counts import count_macs, count_ops_condensenet_convention, count_params
from nets.variants import VARIANTS

FIELDS = ["name", "config", "input_shape", "params", "macs", "ir_agrees", "published_params", "published_macs",
          "params_diff_pct", "macs_compared", "macs_convention", "macs_diff_pct", "counts_source", "notes", "source"]


def _pct(ours: float, published: float | None) -> str:
    return "" if published is None else f"{100.0 * (ours / published - 1.0):+.2f}"


def row(name: str, kwargs: dict, published_params, published_macs, counts_source: str, notes: str,
        convention: str = "conv+linear", shape: tuple[int, ...] | None = None) -> dict:
    """One CSV row for ``nets.get(name, **kwargs)`` at ``shape`` (default: the net's input shape)."""
    info = nets.info(name)
    shape = shape or info.input_shape
    model = nets.get(name, **kwargs)
    params, macs = count_params(model), count_macs(model, shape)
    t = totals(trace(model, shape))
    compared = count_ops_condensenet_convention(model, shape) if convention == "condensenet" else macs
    return {
        "name": name,
        "config": ";".join(f"{k}={v}" for k, v in sorted(kwargs.items())),
        "input_shape": "x".join(str(s) for s in shape),
        "params": params,
        "macs": macs,
        "ir_agrees": t.params == params and t.macs == macs,
        "published_params": "" if published_params is None else int(published_params),
        "published_macs": "" if published_macs is None else int(published_macs),
        "params_diff_pct": _pct(params, published_params),
        "macs_compared": compared,
        "macs_convention": convention,
        "macs_diff_pct": _pct(compared, published_macs),
        "counts_source": counts_source,
        "notes": notes,
        "source": info.source,
    }


def collect() -> list[dict]:
    """Rows for every registered net (default configuration), then every published variant."""
    rows = []
    for name in nets.names():
        i = nets.info(name)
        rows.append(row(name, {}, i.published_params, i.published_macs, i.counts_source, i.notes))
    for v in VARIANTS:
        rows.append(row(v.name, v.kwargs, v.published_params, v.published_macs, v.source, "", v.macs_convention,
                        v.input_shape))
    return rows


def merge(old: list[dict], new: list[dict]) -> list[dict]:
    """Default-configuration rows of ``old`` with those of ``new``'s nets replaced or added (sorted by name),
    then ``old``'s variant rows unchanged.

    ``collect`` writes one default row per registered net, then the variants (which only use registered
    names), so the default block of ``old`` is its first (number of distinct names) rows.
    """
    k = len({r["name"] for r in old})
    fresh = {r["name"]: r for r in new}
    defaults = {r["name"]: r for r in old[:k]} | fresh
    return [defaults[n] for n in sorted(defaults)] + old[k:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "zoo_counts.csv")
    ap.add_argument("--nets", default="", help="comma-separated net names: recompute only these rows, merge into --out")
    args = ap.parse_args()
    only = [n for n in args.nets.split(",") if n]
    for n in only:
        nets.info(n)  # unknown name: UnknownNetError before any work
    if only:
        if not args.out.exists():
            raise SystemExit(f"--nets merges into an existing CSV; {args.out} does not exist")
        with args.out.open(newline="") as f:
            old = list(csv.DictReader(f))
        new = [row(n, {}, nets.info(n).published_params, nets.info(n).published_macs, nets.info(n).counts_source,
                   nets.info(n).notes) for n in only]
        rows = merge(old, [{k: str(v) for k, v in r.items()} for r in new])
    else:
        rows = collect()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    diffs = [(abs(float(r[k])), r["name"], r["config"], k) for r in rows for k in ("params_diff_pct", "macs_diff_pct")
             if r[k] != ""]
    worst = max(diffs)
    agree = sum(str(r["ir_agrees"]) == "True" for r in rows)
    print(f"{len(rows)} rows -> {args.out}; IR agrees on {agree}/{len(rows)}; "
          f"max |diff| {worst[0]:.2f} % ({worst[1]} {worst[2]} {worst[3]})")


if __name__ == "__main__":
    main()
