"""Helpers shared by the sections of the validation page (``benchmarks/_sections_*.py``): reading results files,
formatting numbers, tables, and naming the machine a timing was taken on. No section logic here."""
from __future__ import annotations

import csv
import json
import math
import re
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RES = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs"
HOST_PRESET = ROOT / "hwsim" / "presets" / "cpu" / "host.yaml"


def _json(name: str):
    p = RES / name
    return json.loads(p.read_text()) if p.is_file() else None


def _csv(name: str) -> list[dict] | None:
    p = RES / name
    if not p.is_file():
        return None
    with open(p, newline="") as f:
        return list(csv.DictReader(f))


def _missing(name: str, script: str) -> str:
    return f"_Not measured yet: run `python benchmarks/{script}` (writes `benchmarks/results/{name}`)._\n"


def _table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _f(v, fmt=".3g", scale=1.0):
    try:
        x = float(v) * scale
    except (TypeError, ValueError):
        return "–"
    return "–" if math.isnan(x) else format(x, fmt)


def _cpus(d: dict | None) -> int | None:
    """The CPU count a results file records (``cpus``, ``cpu_count``, ``machine.cpus``, ``load_avg_1min.cpus``,
    ``load_average_1min.cpus``)."""
    if not d:
        return None
    for v in (d.get("cpus"), d.get("cpu_count"), (d.get("machine") or {}).get("cpus") if isinstance(d.get("machine"), dict)
              else None, (d.get("load_avg_1min") or {}).get("cpus") if isinstance(d.get("load_avg_1min"), dict) else None,
              (d.get("load_average_1min") or {}).get("cpus") if isinstance(d.get("load_average_1min"), dict) else None):
        if v is not None:
            return int(v)
    return None


def _load(d: dict | None, key: str = "load_avg_1min") -> str:
    if not d:
        return ""
    cpus = _cpus(d)
    on = f" on {cpus} cores" if cpus else ""
    for k in (key, "loadavg_1min_at_start", "load_average_1min", "loadavg_before"):
        v = d.get(k)
        if isinstance(v, dict):
            v = v.get("before", v.get("value", v.get("1min")))
        if isinstance(v, (list, tuple)):
            v = v[0]
        if v is not None:
            return f" (1-min load average during the run: {float(v):.1f}{on})"
    return ""


def _machine(d: dict | None) -> str:
    """``measured on <the machine the results file names>``: processor, CPU count, Python and torch as recorded."""
    if not d:
        return ""
    m = d.get("machine")
    info = dict(m) if isinstance(m, dict) else ({"processor": m} if isinstance(m, str) else {})
    for k in ("python", "torch", "numba"):
        if k in d and isinstance(d[k], str):
            info.setdefault(k, d[k])
    proc = info.get("processor") or ("x86_64" if "x86_64" in str(info.get("platform", "")) else "")
    cpus = _cpus(d)
    parts = []
    if proc or cpus:
        what = " ".join(x for x in (f"{cpus}-CPU" if cpus else "", proc, "machine") if x)
        parts.append(("an " if what[0] in "aeiouxAEIOUX" else "a ") + what)
    names = {"python": "Python", "torch": "torch", "numba": "Numba"}
    parts += [f"{names[k]} {info[k]}" for k in names if info.get(k)]
    return f"measured on {', '.join(parts)}" if parts else ""


def _host_machine() -> str:
    """The machine the calibrated ``cpu/host`` preset names in its header (its ``# machine:`` line)."""
    if not HOST_PRESET.is_file():
        return "the machine hwsim/presets/cpu/host.yaml was calibrated on"
    for ln in HOST_PRESET.read_text().splitlines():
        if ln.startswith("# machine:"):
            text = ln.split(":", 1)[1].split(", torch")[0].replace(" (/proc/cpuinfo)", "").strip()
            return f"{text} (the machine `hwsim/presets/cpu/host.yaml` names)"
    return "the machine hwsim/presets/cpu/host.yaml was calibrated on"


def _slug(title: str) -> str:
    """The anchor of a heading, as both GitHub and MkDocs (Python-Markdown's toc) make it for an ASCII title."""
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", title).strip().lower())



def _details(summary: str, body: str) -> str:
    """A collapsed block (pymdownx.details / md_in_html on the site, <details> on GitHub)."""
    return f"\n<details markdown=\"1\"><summary>{summary}</summary>\n\n{body.rstrip()}\n\n</details>\n"


def _cpu(d: dict | None) -> str:
    """``AMD EPYC (µarch zen5, measured clock 4.24 GHz, 2 CPUs)``: the CPU a results file's ``host`` record names
    (written by ``benchmarks/_host.py``), else its ``cpu`` / ``machine`` fields; "an unrecorded CPU" if none."""
    if not d:
        return "an unrecorded CPU"
    h = d.get("host") if isinstance(d.get("host"), dict) else {}
    m = d.get("machine") if isinstance(d.get("machine"), dict) else {}
    name = h.get("model") or d.get("cpu") or m.get("processor")
    bits = [f"µarch `{h['uarch']}`" if h.get("uarch") else "",
            f"measured clock {h['clock_ghz']:.2f} GHz" if h.get("clock_ghz") else "",
            f"{_cpus(d)} CPUs" if _cpus(d) else ""]
    bits = [b for b in bits if b]
    return (name or "an unrecorded CPU") + (f" ({', '.join(bits)})" if bits else "")


def _median_abs(values: list[float]) -> float:
    return statistics.median(abs(v) for v in values) if values else float("nan")


def _err_pct(measured, predicted) -> float:
    """predicted / measured - 1, in %; NaN where either is missing or measured is 0."""
    try:
        m, p = float(measured), float(predicted)
    except (TypeError, ValueError):
        return float("nan")
    return 100.0 * (p / m - 1.0) if m else float("nan")


def _verdict(value: float, target: float, what: str = "median") -> str:
    """``5.7 % (target ≤ 10 %: met)``; a miss is bold."""
    if math.isnan(value):
        return "–"
    ok = value <= target
    return f"{value:.1f} % (target ≤ {target:g} %: {'met' if ok else '**missed**'})"


def _versions(d: dict | None) -> str:
    """``Python 3.11.7, torch 2.13.0+cpu, Numba 0.68.1``: the software versions a results file records."""
    if not d:
        return ""
    m = d.get("machine") if isinstance(d.get("machine"), dict) else {}
    names = {"python": "Python", "torch": "torch", "numba": "Numba"}
    vals = {k: m.get(k) or (d.get(k) if isinstance(d.get(k), str) else None) for k in names}
    return ", ".join(f"{names[k]} {v}" for k, v in vals.items() if v)
