"""Compression passes on a real (tiny) task: accuracy vs MACs vs simulated latency on sklearn digits.

A small conv chain (the XNOR engine maps feed-forward chains, so every method, binarization
included, runs on the same network) is trained on scikit-learn's bundled 8x8 digits (1,797 images,
no download; 70/30 split, seeded). Every method of ``nets.compress`` is applied to the trained net,
then fine-tuned briefly; we record the test accuracy right after compression and after fine-tuning,
the parameter and MAC counts of the traced result, and the simulated latency / energy of
``hwsim.simulate`` on a Cortex-A72, a Cortex-M7, the small IMC accelerator (``imc/edge-small``), and,
for the binary / 2-bit networks, the FPGA XNOR engine (``fpga/pynq-z1``), whose own bit-exact
functional simulation also gives the accuracy it computes on the test set.

    python benchmarks/compress_digits.py            # ~1-2 minutes on 2 cores
writes ``benchmarks/results/compress_digits.csv`` and ``benchmarks/results/compress_digits.png``, and
``benchmarks/results/compress_zoo.csv``: the dependency analysis and a global 50 % filter pruning on
full-width CIFAR-size ResNet-20, MobileNetV2, GhostNet and DenseNet-BC (counts, simulated Cortex-A72
latency before/after, and the pruned network's deviation from its masked reference).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import time
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

import hwsim
import nets.compress as nc
from mapping import Graph, trace
from mapping.analysis import totals

INPUT_SHAPE = (1, 1, 8, 8)
RESULTS = Path(__file__).resolve().parent / "results"


def load_digits(seed: int = 0):
    """(x_train, y_train, x_test, y_test); pixels are the dataset's integers 0..16 (as float32)."""
    from sklearn.datasets import load_digits as _load

    d = _load()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(d.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = int(0.3 * len(y))
    return x[perm[n_test:]], y[perm[n_test:]], x[perm[:n_test]], y[perm[:n_test]]


def _cbr(cin: int, cout: int) -> list[tuple[str, nn.Module]]:
    return [("conv", nn.Conv2d(cin, cout, 3, 1, 1, bias=False)), ("bn", nn.BatchNorm2d(cout)), ("relu", nn.ReLU())]


def digits_cnn(width: int = 16) -> nn.Module:
    """conv-BN-ReLU x2 (w), max pool, conv-BN-ReLU x2 (2w), max pool, flatten, linear: 8x8 -> 10 classes."""
    w = width
    layers = OrderedDict()
    for i, (a, b) in enumerate([(1, w), (w, w)]):
        layers[f"b{i}"] = nn.Sequential(OrderedDict(_cbr(a, b)))
    layers["pool1"] = nn.MaxPool2d(2)
    for i, (a, b) in enumerate([(w, 2 * w), (2 * w, 2 * w)], start=2):
        layers[f"b{i}"] = nn.Sequential(OrderedDict(_cbr(a, b)))
    layers["pool2"] = nn.MaxPool2d(2)
    layers["flat"] = nn.Flatten()
    layers["fc"] = nn.Linear(2 * w * 4, 10)
    return nn.Sequential(layers)


def train(model: nn.Module, data, epochs: int, lr: float, seed: int = 0, extra_loss=None, params=None) -> nn.Module:
    xtr, ytr = data[0], data[1]
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(params if params is not None else model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(ytr), generator=g)
        for i in range(0, len(ytr), 64):
            idx = perm[i:i + 64]
            loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            if extra_loss is not None:
                loss = loss + extra_loss()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def accuracy(model: nn.Module, data) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(data[2]).argmax(1) == data[3]).float().mean())


def simulate_costs(model, data, binary: bool) -> dict:
    """Counts and simulated latencies (µs) / energies (µJ) of ``model`` (a module, or the graph of a PTQ model,
    whose input-quantizing hooks tracing refuses) at batch 1."""
    g = model if isinstance(model, Graph) else trace(model, INPUT_SHAPE)
    t = totals(g)
    row = {"params": t.params, "macs": t.macs}
    if binary:
        rep = hwsim.simulate(model, "fpga/pynq-z1", input_shape=INPUT_SHAPE).report
        out = hwsim.simulate(model, "fpga/pynq-z1", x=data[2].numpy()).outputs
        row.update(xnor_latency_us=rep.latency_s * 1e6, xnor_fps=rep.fps,
                   xnor_engine_accuracy=float((out.argmax(1) == data[3].numpy()).mean()))
        return row
    for key, spec in (("cpu_a72", "cpu/cortex-a72"), ("cpu_m7", "cpu/cortex-m7"), ("imc", "imc/edge-small")):
        rep = hwsim.simulate(model, spec, input_shape=INPUT_SHAPE).report
        row[f"{key}_latency_us"] = rep.latency_s * 1e6
        row[f"{key}_energy_uj"] = rep.energy_j * 1e6
    return row


def run(epochs: int, ft_epochs: int, seed: int) -> list[dict]:
    torch.set_num_threads(1)  # tiny tensors: one thread is faster than contended threads
    data = load_digits(seed)
    calib = data[0][:256]
    torch.manual_seed(seed)
    t0 = time.time()
    base = train(digits_cnn(), data, epochs, 3e-3, seed)
    base_time = time.time() - t0
    rows = []

    def record(method: str, setting: str, model: nn.Module, t_start: float, finetune=True, binary=False,
               ft_fn=None, graph=None) -> None:
        acc0 = accuracy(model, data)
        if finetune:
            (ft_fn or (lambda m: train(m, data, ft_epochs, 1e-3, seed + 1)))(model)
        acc1 = accuracy(model, data) if finetune else acc0
        row = {"method": method, "setting": setting, "acc_compressed": acc0, "acc_finetuned": acc1,
               "fine_tune_epochs": ft_epochs if finetune else 0, "seconds": time.time() - t_start}
        row.update(simulate_costs(model if graph is None else graph, data, binary))
        rows.append(row)
        print(f"{method:<24} {setting:<34} acc {acc0:.3f} -> {acc1:.3f}  MACs {row['macs']:>7}  "
              f"params {row['params']:>6}  {row['seconds']:.1f}s", flush=True)

    record("baseline", f"fp32; {epochs} epochs", base, t0, finetune=False)
    rows[-1]["seconds"] = base_time

    t = time.time()
    record("magnitude-unstructured", "70% of weights; global", nc.prune_unstructured(base, 0.7), t)
    t = time.time()
    record("magnitude-filters", "50% of channels; global", nc.prune_filters(base, INPUT_SHAPE, 0.5), t)

    t = time.time()  # network slimming: train with the L1-on-gamma hook from scratch, then slim
    torch.manual_seed(seed)
    sparse = digits_cnn()
    with nc.slimming_hook(sparse, lam=1e-3):
        train(sparse, data, epochs, 3e-3, seed)
    record("network-slimming", "lambda 1e-3; 50% of channels; global", nc.slim(sparse, INPUT_SHAPE, 0.5), t)

    t = time.time()
    record("bn-statistics", "data-free; 50% of channels; global", nc.prune_bn_stats(base, INPUT_SHAPE, 0.5), t)
    for mode in nc.MODES:
        t = time.time()
        record(f"complexity-{mode}", "layers covering 50%; 50% of their channels",
               nc.prune_complexity(base, INPUT_SHAPE, 0.5, mode=mode, coverage=0.5), t)
    for comp in (True, False):
        t = time.time()
        record("feature-similarity", f"256 calibration images; 50% per layer; compensation {'on' if comp else 'off'}",
               nc.prune_similar(base, INPUT_SHAPE, calib, 0.5, scope="layer", compensate_removed=comp), t)

    t = time.time()  # learned sparse connectivity: masks trained with the task loss + connection count
    import copy

    scl_net = copy.deepcopy(base)
    scl = nc.SparseConnectivity(scl_net, granularity="filter", init=0.05)
    train(scl_net, data, ft_epochs, 2e-3, seed + 2, extra_loss=lambda: scl.penalty(0.5))
    density = scl.density()
    scl.finalize()
    record("sparse-connectivity", f"filter masks; lambda 0.5 (density {density:.2f})",
           nc.remove_dead_filters(nc.make_permanent(scl_net), INPUT_SHAPE), t)

    for bits in (8, 4):
        t = time.time()
        res = nc.quantize_ptq(base, calib, INPUT_SHAPE, weight_bits=bits, act_bits=bits)
        record("ptq", f"{bits}-bit per-channel W; per-tensor A", res.model, t, finetune=False, graph=res.graph())
        spec = dataclasses.replace(hwsim.load_preset("imc/edge-small"), weight_bits=bits, input_bits=bits)
        rep = hwsim.simulate(res.graph(), spec).report
        rows[-1].update(imc_latency_us=rep.latency_s * 1e6, imc_energy_uj=rep.energy_j * 1e6)

    def ft_binary(m):
        train(m, data, ft_epochs * 2, 1e-3, seed + 3)
        nc.recalibrate_bn(m, data[0], INPUT_SHAPE)

    t = time.time()
    record("binarize", "±1 W and A (raw 0..16 pixels in)",
           nc.binarize(base, INPUT_SHAPE, keep_first=False, keep_last=False), t, binary=True, ft_fn=ft_binary)
    t = time.time()
    q2, _ = nc.quantize_xnor(base, INPUT_SHAPE, bits=2, calib=calib, keep_first=False, keep_last=False)
    record("xnor-2bit", "2-bit W and A (raw pixels in)", q2, t, binary=True, ft_fn=ft_binary)
    return rows


ZOO = {  # full-width CIFAR-size (32x32) configurations of the four families
    "resnet20": {},
    "mobilenetv2": {"num_classes": 10},
    "ghostnet": {"num_classes": 10},
    "densenet-bc": {"depth": 40, "growth": 12},
}


def zoo_table(ratio: float = 0.5, seed: int = 0) -> list[dict]:
    """Per zoo net: dependency-analysis size and time, and a global 50 % filter-magnitude pruning:
    counts, simulated Cortex-A72 latency, and max |pruned - masked reference| on random inputs."""
    import nets
    from nets.compress.testing import randomize_bn

    torch.set_num_threads(1)
    shape = (1, 3, 32, 32)
    rows = []
    for name, kw in ZOO.items():
        model = randomize_bn(nets.get(name, seed=seed, **kw), seed)
        t = time.time()
        deps = nc.analyze(model, shape)
        t_analyze = time.time() - t
        remove = nc.select_channels(deps, nc.filter_scores(model, deps), ratio, "global")
        t = time.time()
        pruned = nc.remove_channels(model, deps, remove)
        t_remove = time.time() - t
        x = torch.randn(4, *shape[1:], generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            ref = nc.mask_channels(model, deps, remove)(x)
            err = float((pruned(x) - ref).abs().max() / ref.abs().max())
        before = hwsim.simulate(model, "cpu/cortex-a72", input_shape=shape).report
        after = hwsim.simulate(pruned, "cpu/cortex-a72", input_shape=shape).report
        t0, t1 = totals(deps.graph), totals(trace(pruned, shape))
        row = {"net": name, "config": " ".join(f"{k}={v}" for k, v in kw.items()) or "default",
               "groups": len(deps.groups), "prunable_channels": len(deps.prunable),
               "pinned_classes": len(set(deps.pinned)), "analyze_s": t_analyze, "remove_s": t_remove,
               "ratio": ratio, "params": t0.params, "params_pruned": t1.params, "macs": t0.macs,
               "macs_pruned": t1.macs, "a72_latency_us": before.latency_s * 1e6,
               "a72_latency_pruned_us": after.latency_s * 1e6, "max_rel_err_vs_mask": err}
        rows.append(row)
        print(f"{name:<12} groups {row['groups']:>3}  prunable {row['prunable_channels']:>5}  params "
              f"{t0.params}->{t1.params}  MACs {t0.macs}->{t1.macs}  A72 {row['a72_latency_us']:.0f}->"
              f"{row['a72_latency_pruned_us']:.0f} us  err {err:.1e}", flush=True)
    return rows


def write_csv(rows: list[dict], out_csv: Path) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with open(out_csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def write(rows: list[dict], out_csv: Path, out_png: Path) -> None:
    write_csv(rows, out_csv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    float_rows = [r for r in rows if "cpu_m7_latency_us" in r]
    for r in float_rows:
        label = r["method"] + ("" if r["method"] != "ptq" else f" {r['setting'][:5]}")
        axes[0].scatter(r["macs"], r["acc_finetuned"], s=40)
        axes[0].annotate(label, (r["macs"], r["acc_finetuned"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        axes[1].scatter(r["cpu_m7_latency_us"], r["acc_finetuned"], s=40)
        axes[1].annotate(label, (r["cpu_m7_latency_us"], r["acc_finetuned"]), fontsize=7, xytext=(3, 3),
                         textcoords="offset points")
    for r in rows:
        if "xnor_latency_us" in r:
            axes[0].scatter(r["macs"], r["acc_finetuned"], marker="x", c="k")
            axes[0].annotate(r["method"], (r["macs"], r["acc_finetuned"]), fontsize=7, xytext=(3, -9),
                             textcoords="offset points")
    axes[0].set_xlabel("MACs per image")
    axes[0].set_ylabel("test accuracy after fine-tuning")
    axes[0].set_title("sklearn digits: accuracy vs MACs (x: binary/2-bit, XNOR engine)")
    axes[1].set_xlabel("simulated latency on Cortex-M7 (µs, fp32)")
    axes[1].set_title("accuracy vs simulated latency (hwsim cpu/cortex-m7)")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--ft-epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "compress_digits.csv")
    args = ap.parse_args()
    rows = run(args.epochs, args.ft_epochs, args.seed)
    write(rows, args.out, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    zoo_csv = args.out.with_name("compress_zoo.csv")
    write_csv(zoo_table(seed=args.seed), zoo_csv)
    print(f"wrote {zoo_csv}")


if __name__ == "__main__":
    main()
