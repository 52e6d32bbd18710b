"""Images per second of a full CapsAN D + G step, through the method's own training loop (the harness)
and through a bare loop over the same modules, at batch sizes 64 and 256; the harness's overhead is
1 - harness / bare.

    python benchmarks/capsan_step.py [--device cuda] [--size 28] [--steps 50] [--precision bf16]
                                     [--compile default|reduce-overhead|max-autotune]

The harness path is ``CapsanTrainer.adversarial_epoch`` over a group of one (the solo cell): class-balanced batches sampled on the device, loss
accumulation on the device, no host synchronisation inside the epoch. The bare loop draws its batches from a
pre-built index tensor and calls the modules and losses directly.

With ``--compile MODE`` a third column times the harness with its networks through ``torch.compile`` (what
``bench run --compile MODE`` does; compilation happens in the untimed warm-up) and the last column is its
speed-up over the eager harness. ``reduce-overhead`` adds CUDA-graph replay on a GPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.datasets.base import ImageSet
from bench.methods import FitContext
from bench.methods.budget import Ledger
from bench.methods.capsan import CapsAN, CapsanTrainer
from bench.methods.capsules import feature_matching, pull_away


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_trainer(size: int, batch: int, device, precision: str, compile_mode: str | None = None):
    """A solo cell's trainer (``CapsanTrainer`` over a group of one) on 4,096 random images at 1:9, as ``fit``
    prepares it (``bench run --precision/--compile`` set the context)."""
    n = 4096
    labels = (np.arange(n) % 10 == 0).astype(np.int64)  # 1:9 imbalance, two classes
    images = np.random.default_rng(0).integers(0, 256, (n, 1, size, size), dtype=np.uint8)
    ctx = FitContext(device=device, seed=0, epochs=1, artifact_dir=Path(tempfile.gettempdir()), ledger=Ledger(),
                     precision=precision, compile=compile_mode)
    method = CapsAN(batch_size=batch, precision=precision)
    return CapsanTrainer([method._prepare(ImageSet(images, labels, ("0", "1")), ctx)])


def check_no_host_sync(size, device, precision, compile_mode=None) -> None:
    """Run a harness epoch with CUDA's sync debug mode set to error: any host synchronisation raises."""
    trainer = make_trainer(size, 64, device, precision, compile_mode)
    trainer.adversarial_epoch(WARMUP)  # warm-up (allocations, lazy init, compiling)
    torch.cuda.set_sync_debug_mode("error")
    try:
        running = trainer.adversarial_epoch(5)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    print(f"no host synchronisation in 5 harness steps{' (compiled)' if compile_mode else ''} "
          f"(losses {running.tolist()})")


WARMUP = 5  # untimed steps first: allocations, cuDNN plans, compilation, CUDA-graph recording


def time_harness(size, batch, steps, device, precision, compile_mode=None) -> float:
    trainer = make_trainer(size, batch, device, precision, compile_mode)
    trainer.adversarial_epoch(WARMUP)  # warm-up
    _sync(device)
    start = time.perf_counter()
    running = trainer.adversarial_epoch(steps)
    running.tolist()  # the one read-back per epoch, as in fit
    _sync(device)
    return batch * steps / (time.perf_counter() - start)


def time_bare(size, batch, steps, device, precision) -> float:
    trainer = make_trainer(size, batch, device, precision)
    method = trainer.first
    x, y = method.x, method.y
    G, latent, D, opt_d, opt_g = method.G, method.latent, method.D, method.opt_d, method.opt_g
    index = torch.randint(len(x), (steps + 3, batch), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def step(i):
        xr, yr = x[index[i]], y[index[i]]
        with autocast:
            xf = G(latent(yr), yr)
            real, fake = D(xr), D(xf.detach())
            d_loss = (D.loss(real.scores.float(), yr) + D.loss(fake.scores.float(), torch.full_like(yr, 2))
                      + 0.1 * pull_away(fake.embedding.float()))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        with autocast:
            g_loss = feature_matching(real.features.detach().float(), D(xf).features.float(), yr, yr, 2)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()

    for i in range(3):
        step(i)
    _sync(device)
    start = time.perf_counter()
    for i in range(3, steps + 3):
        step(i)
    _sync(device)
    return batch * steps / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 50 on a GPU, 5 on a CPU)")
    parser.add_argument("--batches", default="64,256")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--compile", default=None, choices=["default", "reduce-overhead", "max-autotune"],
                        help="also time the harness with torch.compile in this mode")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each loop; the best counts")
    args = parser.parse_args()
    device = torch.device(args.device)
    steps = args.steps or (50 if device.type == "cuda" else 5)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"CapsAN D+G step, {args.size}x{args.size}x1, {args.precision}, best of {args.repeats} x {steps} timed "
          f"steps on {name}")
    compiled_head = f" {'compiled img/s':>15} {'steps/s':>8} {'speed-up':>9}" if args.compile else ""
    print(f"{'batch':>6} {'harness img/s':>14} {'bare img/s':>11} {'steps/s':>8} {'overhead':>9}{compiled_head}")
    if device.type == "cuda":
        check_no_host_sync(args.size, device, args.precision)
        if args.compile:
            check_no_host_sync(args.size, device, args.precision, args.compile)
    for batch in map(int, args.batches.split(",")):
        # Alternate the loops and keep the best of each: clocks and other processes add noise.
        runs = [(time_harness(args.size, batch, steps, device, args.precision),
                 time_bare(args.size, batch, steps, device, args.precision),
                 time_harness(args.size, batch, steps, device, args.precision, args.compile) if args.compile
                 else float("nan")) for _ in range(args.repeats)]
        harness, bare, compiled = (max(r[i] for r in runs) for i in range(3))
        line = f"{batch:>6} {harness:>14.0f} {bare:>11.0f} {harness / batch:>8.2f} {1 - harness / bare:>9.1%}"
        if args.compile:
            line += f" {compiled:>15.0f} {compiled / batch:>8.2f} {compiled / harness:>8.2f}x"
        print(line)


if __name__ == "__main__":
    main()
