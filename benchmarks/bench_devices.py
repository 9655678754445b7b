"""CPU and GPU figures side by side, measured in one run on one machine.

For each case and launcher: regions, seconds, regions per second, the share of the
time spent in the geometry engine (the rest is vertex forward passes and glue), and the
ratio of the whole run to one plain float64 forward pass of the final vertex set
through the model on the same device (the cost no exact method can avoid).

Launchers:
  cpu           the CPU launcher (threads over blocks of the step bodies)
  host-batched  the GPU's launcher logic run on the host (what the GPU runs, minus the
                GPU); its cost over `cpu` is the price of the batched face pass
  cuda          the GPU's launcher on the GPU, where one is present

    python benchmarks/bench_devices.py                      # full table
    python benchmarks/bench_devices.py --quick              # small cases only
    python benchmarks/bench_devices.py --launchers cpu,cuda --cases CNN,784

Every launcher's partition is compared with the `cpu` launcher's: "same" means the same
faces, vertex indices and edge labels, bit for bit, and vertices within 1e-12 of the
largest coordinate (the printout says where they differ otherwise).
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import time

import torch

import splinecam
from splinecam import zoo
from splinecam.testing import host_batched_launcher, partition_difference

from bench_mlp import cases as mlp_cases  # same cases, same slices


def cases(quick):
    """bench_mlp.py's cases from 2-64x3 on (the smaller ones are all overhead), and a
    residual CNN (zoo.small_resnet: skip additions, batch norm, max pooling)."""
    out = [(name, build, sl) for name, build, sl, _ in mlp_cases(quick)][2:]
    if not quick:
        g = torch.Generator().manual_seed(1)
        a, b, c = torch.randn(3, 3, 32, 32, generator=g)
        cen = (a + b + c) / 3
        sl = splinecam.Slice.through(*[cen + 0.01 * (t - cen) for t in (a, b, c)])
        out.append(("ResNet 3x32x32 (zoo.small_resnet), tri/100", lambda: zoo.small_resnet().eval(), sl))
    return out


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run(model, sl, launcher, repeat=2):
    device = "cuda" if launcher == "cuda" else "cpu"

    def once():
        if launcher == "host-batched":
            with host_batched_launcher():
                return splinecam.partition(model, sl, progress=False, decision_boundary=False, device="cpu")
        return splinecam.partition(model, sl, progress=False, decision_boundary=False, device=device)

    once()  # warm-up (and CUDA context)
    best, P = float("inf"), None
    for _ in range(repeat):
        sync(device)
        t = time.perf_counter()
        P = once()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best, P


def forward_seconds(model, sl, vertices, device, repeat=3):
    m = copy.deepcopy(model).double().eval().to(device)
    x = sl.to_input(vertices).to(device)
    best = float("inf")
    with torch.no_grad():
        for _ in range(repeat):
            sync(device)
            t = time.perf_counter()
            m(x)
            sync(device)
            best = min(best, time.perf_counter() - t)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small cases only")
    ap.add_argument("--launchers", default="cpu,host-batched,cuda",
                    help="comma-separated, from cpu, host-batched, cuda (cuda where a GPU is present)")
    ap.add_argument("--cases", default="", help="comma-separated substrings of case names to run (default: all)")
    args = ap.parse_args(argv)
    gpu = splinecam.cuda_available()
    info = splinecam.build_info()
    print(f"splinecam {splinecam.__version__} | {platform.processor() or platform.machine()} | {os.cpu_count()} CPUs | "
          f"torch {torch.__version__} | CUDA build: {info['cuda']} {info['cuda_architectures']} | "
          f"GPU: {torch.cuda.get_device_name() if gpu else 'none'} | float64")
    asked = [x.strip() for x in args.launchers.split(",") if x.strip()]
    bad = sorted(set(asked) - {"cpu", "host-batched", "cuda"})
    if bad:
        ap.error(f"unknown launcher(s) {bad}; choose from cpu, host-batched, cuda")
    launchers = ["cpu"] + [x for x in asked if x != "cpu" and (x != "cuda" or gpu)]
    wanted = [x.strip() for x in args.cases.split(",") if x.strip()]
    header = (f"{'case':42s} {'launcher':>12s} {'regions':>9s} {'seconds':>8s} {'regions/s':>10s} {'geometry':>8s} "
              f"{'x forward':>9s} {'vs cpu':>7s}  same as cpu")
    print(header)
    print("-" * len(header))
    for name, build, sl in cases(args.quick):
        if wanted and not any(w in name for w in wanted):
            continue
        model = build()
        cpu_s, cpu_P = None, None
        for launcher in launchers:
            sec, P = run(model, sl, launcher)
            fwd = forward_seconds(model, sl, P.vertices, "cuda" if launcher == "cuda" else "cpu")
            geo = P.run_info.get("geometry_seconds", 0.0) / max(P.run_info["seconds"], 1e-12)
            if launcher == "cpu":
                cpu_s, cpu_P = sec, P
            diff = None if launcher == "cpu" else partition_difference(cpu_P, P)
            same = "-" if launcher == "cpu" else "yes" if diff is None else f"no: {diff}"
            print(f"{name:42s} {launcher:>12s} {P.num_regions:9d} {sec:8.3f} {P.num_regions / sec:10.0f} "
                  f"{100 * geo:7.0f}% {sec / fwd:8.2f}x {cpu_s / sec:6.2f}x  {same}", flush=True)
    if not gpu:
        why = "the extension was built without CUDA" if not info["cuda"] else "no usable GPU on this machine"
        print(f"\ncuda: not run ({why}); the CUDA launcher's logic ran above as 'host-batched'.")
    print("geometry: share of the run spent in the engine's refinements (the rest: forward passes, glue).")
    print("x forward: run time / one float64 forward pass of the final vertex set on the same device.")
    print("vs cpu: cpu launcher time / this launcher's time, same machine, same run.")


if __name__ == "__main__":
    sys.exit(main())
