"""Command line: ``splinecam demo`` (also ``python -m splinecam demo``)."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="splinecam",
        description="Exact linear regions and decision boundaries of 2-D slices of piecewise-linear networks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="train a small MLP on two moons and draw its exact partition (CPU)")
    demo.add_argument("--out", default="demo_output", help="folder for the figures (default: demo_output)")
    demo.add_argument("--steps", type=int, default=600, help="training steps (default: 600)")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    sub.add_parser("info", help="print how the extension was built")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo
        s = run_demo(args.out, steps=args.steps, progress=not args.no_progress)
        print(f"splinecam demo: {s['regions']} regions, {s['edges']} edges, {s['decision_segments']} decision-boundary "
              f"segments in {s['seconds']:.3f} s (training {s['train_seconds']:.1f} s, accuracy "
              f"{s['train_accuracy']:.3f}); figures: {', '.join(s['figures'])}")
        return 0
    if args.command == "info":
        import splinecam
        for k, v in splinecam.build_info().items():
            print(f"{k}: {v}")
        print(f"cuda_available: {splinecam.cuda_available()}")
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
