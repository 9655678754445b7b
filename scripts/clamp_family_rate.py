"""How often the open stacked-clamp family still fails.

N fixed random MLPs (seeded: every run draws the same ones) with a clamp (Hardtanh or
ReLU6) in the last layer and weights scaled by 1e2..1e6 per layer, each checked by
``splinecam.testing.check_partition`` and by the property tests' area and Euler check.

    .venv/bin/python scripts/clamp_family_rate.py [installed | path/to/_core.so] [N]

The first argument loads another build of the engine instead of the installed one (a
before/after figure for a change of the kernels).
"""
import collections
import importlib.util
import random
import sys

if len(sys.argv) > 1 and sys.argv[1].endswith(".so"):
    _spec = importlib.util.spec_from_file_location("splinecam._core", sys.argv[1])
    _mod = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_mod)
    sys.modules["splinecam._core"] = _mod
sys.path[:0] = ["tests/driver", "tests"]

import test_properties as T  # noqa: E402
from splinecam.testing import check_partition  # noqa: E402


def main():
    n_models = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    print("engine:", sys.modules["splinecam._core"].__file__)
    rng = random.Random(12345)
    fails = collections.Counter()
    by_scale, total = collections.Counter(), collections.Counter()
    for _ in range(n_models):
        n = rng.randint(1, 4)
        acts = [rng.choice(T.ACTS) for _ in range(n)]
        acts[-1] = rng.choice(("hardtanh", "relu6"))
        spec = T.MLPSpec(seed=rng.randint(0, 2 ** 16), widths=tuple(rng.randint(1, 8) for _ in range(n)),
                         acts=tuple(acts), n_out=rng.randint(1, 2), integer=rng.random() < 0.3,
                         duplicate=rng.random() < 0.3, zero_bias=rng.random() < 0.3, scale_exp=rng.randint(2, 6),
                         domain="square", domain_seed=rng.randint(0, 99))
        model, sl = spec.build()
        total[spec.scale_exp] += 1
        try:
            P = T.run(model, sl)
        except Exception as e:  # a crash counts, and says what it was
            fails["error"] += 1
            print("error:", spec, type(e).__name__, str(e)[:160])
            continue
        try:
            check_partition(P)
        except AssertionError as e:
            fails["check"] += 1
            by_scale[spec.scale_exp] += 1
            print("check:", spec, str(e)[:160])
        try:
            T.assert_area_and_euler(P)
        except AssertionError:
            fails["area"] += 1
    print(f"{n_models} models: {dict(fails)}; check_partition failures by scale exponent "
          f"{sorted(by_scale.items())} of {sorted(total.items())}")


if __name__ == "__main__":
    main()
