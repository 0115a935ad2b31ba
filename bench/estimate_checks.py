"""Cross-checks of the rpi4 latency models that leave-one-out does not cover (README, section 5).

1. The clock rule across MLPerf rounds: the tflite-ruy model (TFLite 2.7.1, fitted at 1800 MHz)
   moved to 1500 MHz, against the v1.0 rows (TFLite 2.4.1 at 1500 MHz), beside the same model
   unscaled: does the rule move the estimate towards the slower clock's measurements? (The
   rounds also differ in software, so this bounds the rule, it does not isolate it.)
2. MobileNetV3 from a fit that saw no V3 at all (V1 + V2 rows only), per v2.0 runtime.
Usage: python bench/estimate_checks.py
"""
from importlib import resources

import numpy as np
import torch

from edgeexport.estimate.latency_model import (
    analysed_features,
    at_clock,
    fit_runtime,
    predict,
    read_measurements,
)
from edgeexport.targets import load_target

DATA = resources.files("edgeexport.data")
cache = {}


def features(m):
    key = (m.family, m.alpha, m.resolution, m.precision)
    if key not in cache:
        cache[key] = analysed_features(m)
    return cache[key]


def main() -> None:
    torch.set_num_threads(1)
    model = load_target("rpi4").latency_models["tflite-ruy"]
    v1 = read_measurements(DATA / "rpi4_mlperf_v1.0_krai_calibration.csv", None, 1500, 4,
                           "tflite-ruy-2_4_1")
    print(f"1. {model.name} ({model.clock_mhz:g} MHz) against the v1.0 rows (1500 MHz)")
    for precision in ("fp32", "int8"):
        rows = [m for m in v1 if m.precision == precision]
        coefficients = getattr(model, precision).coefficients
        for clock in (model.clock_mhz, 1500):
            c = at_clock(coefficients, model.clock_mhz, clock)
            err = np.array([predict(features(m), c) / m.latency_ms - 1 for m in rows])
            print(f"   {precision} model at {clock:g} MHz: median error "
                  f"{100 * np.median(err):+.1f}%, median |error| "
                  f"{100 * np.median(abs(err)):.1f}%, max {100 * abs(err).max():.1f}%")
    print("2. V3 predicted by a fit on the V1 + V2 rows only (v2.0, 1800 MHz)")
    for runtime in ("tflite", "armnn"):
        rows = read_measurements(DATA / "rpi4_mlperf_v2.0_krai_calibration.csv", runtime, None, 4)
        fit = fit_runtime([m for m in rows if "v3" not in m.family], features)
        for p in fit.precisions:
            for m in rows:
                if "v3" in m.family and m.precision == p.precision:
                    err = predict(features(m), p.coefficients) / m.latency_ms - 1
                    print(f"   {runtime} {p.precision} {m.family}: {100 * err:+.1f}%")


if __name__ == "__main__":
    main()
