"""Demo: train a small binarized CNN on scikit-learn's bundled digits (8x8, no download) in seconds,
run it bit-exactly on the FPGA XNOR engine, and size the FPGA design.

``demo(out_dir) -> str`` writes ``fpga_demo.json`` into ``out_dir`` and returns a short text.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

__all__ = ["train_digits_bnn", "demo"]


def train_digits_bnn(seed: int = 0, epochs: int = 20, progress: bool | None = None):
    """A binarized CNN trained on sklearn digits. Returns ``(model, (x_train, y_train, x_test, y_test))``
    with images as float32 integers 0..16 (the engine's first layer computes on them exactly). ``progress``: a bar
    over the epochs on stderr (None: when stderr is a terminal and training lasts over a second)."""
    import torch
    import torch.nn as nn
    from sklearn.datasets import load_digits

    from hwsim.functional import progress_bar
    from nets.layers import BinaryConv2d, BinaryLinear, BinarySign

    digits = load_digits()
    x = digits.images.astype(np.float32)[:, None]  # (1797, 1, 8, 8), integers 0..16
    y = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x))
    split = int(0.8 * len(x))
    tr, te = idx[:split], idx[split:]
    g = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny layers: threading overhead dominates
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(
            BinaryConv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), BinarySign(), nn.MaxPool2d(2),
            BinaryConv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), BinarySign(), nn.MaxPool2d(2),
            nn.Flatten(), BinaryLinear(32 * 2 * 2, 10), nn.BatchNorm1d(10))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
        xt, yt = torch.from_numpy(x[tr]), torch.from_numpy(y[tr])
        bar = progress_bar(epochs, "training a binary CNN on digits", progress, unit="epoch",
                           delay=1.0 if progress is None else 0.0)
        for _ in range(epochs):
            model.train()
            perm = torch.randperm(len(xt), generator=g)
            for b in range(0, len(xt), 64):
                i = perm[b:b + 64]
                loss = nn.functional.cross_entropy(model(xt[i]), yt[i])
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():  # BinaryConnect: keep the latent weights in [-1, 1]
                    for m in model.modules():
                        if isinstance(m, (BinaryConv2d, BinaryLinear)):
                            m.weight.clamp_(-1, 1)
            sched.step()
            bar.update()
        bar.close()
    torch.set_num_threads(threads)
    model.eval()
    return model, (x[tr], y[tr], x[te], y[te])


def demo(out_dir: str | Path) -> str:
    """Train, run bit-exactly on ``fpga/pynq-z1``, size the design; write ``fpga_demo.json``."""
    import torch

    import hwsim
    import mapping
    from hwsim.fpga.functional import run_program
    from mapping.fpga import map_xnor

    t0 = time.perf_counter()
    model, (_, _, x_te, y_te) = train_digits_bnn()
    t_train = time.perf_counter() - t0
    with torch.no_grad():
        ref = model(torch.from_numpy(x_te)).numpy()
    result = hwsim.simulate(model, "fpga/pynq-z1", x=x_te, input_shape=x_te.shape)
    out = result.outputs
    # bit-exactness of every binary activation, not just the logits
    program = map_xnor(mapping.trace(model, x_te.shape))
    _, kept = run_program(program, x_te, keep=True)
    h = torch.from_numpy(x_te)
    exact_acts = True
    with torch.no_grad():
        for i, m in enumerate(model):
            h = m(h)
            for layer in program.mvaus:
                if layer.out_enc is not None and layer.nodes[-1] == f"_{i}":
                    exact_acts &= bool(np.array_equal(2.0 * kept[layer.name] - 1, h.numpy()))
    acc_torch = float((ref.argmax(1) == y_te).mean())
    acc_engine = float((out.argmax(1) == y_te).mean())
    same_pred = bool(np.array_equal(ref.argmax(1), out.argmax(1)))
    max_diff = float(np.abs(out - ref).max())
    rep = hwsim.simulate(model, "fpga/pynq-z1", input_shape=(1, 1, 8, 8)).report  # one frame, auto folding
    sweep = []
    for fps in (1e4, 1e5, 1e6, 1e7):
        r = hwsim.simulate(model, "fpga/pynq-z1", input_shape=(1, 1, 8, 8), folding="auto", target_fps=fps).report
        sweep.append({"target_fps": fps, "fps": r.fps, "luts": r.luts, "bram18": r.bram18,
                      "energy_per_frame_j": r.energy_per_frame_j, "fits": r.fits_on_chip})
    data = {"test_images": int(len(y_te)), "train_s": t_train, "accuracy_torch": acc_torch,
            "accuracy_engine": acc_engine, "same_predictions": same_pred, "binary_activations_bit_exact": exact_acts,
            "max_abs_logit_diff": max_diff, "fps": rep.fps, "latency_s": rep.latency_s, "luts": rep.luts,
            "bram18": rep.bram18, "energy_per_frame_j": rep.energy_per_frame_j, "folding": rep.folding,
            "folding_sweep": sweep, "total_s": time.perf_counter() - t0}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "fpga_demo.json").write_text(json.dumps(data, indent=2))
    return (f"XNOR engine demo (binarized CNN, sklearn digits, {len(y_te)} test images, trained in {t_train:.1f} s)\n"
            f"  accuracy: torch {acc_torch:.3f}, engine {acc_engine:.3f}; identical predictions: {same_pred}; "
            f"binary activations bit-exact: {exact_acts}; max |logit diff| {max_diff:.2g}\n"
            f"  fpga/pynq-z1, fastest folding that fits: {rep.fps:.4g} fps, latency {rep.latency_s * 1e6:.3g} us, "
            f"{rep.luts} LUTs, {rep.bram18} BRAM18, {rep.energy_per_frame_j * 1e9:.3g} nJ/frame\n"
            f"  folding sweep (target fps -> fps, LUTs): "
            + ", ".join(f"{s['target_fps']:.0e} -> {s['fps']:.3g}, {s['luts']}" for s in sweep)
            + f"\n  wrote {out_dir / 'fpga_demo.json'}")
