"""CPU per training step of the test fixtures' networks, NCHW (the baseline) against
channels-last (what tests/synthetic_data.train uses): α 0.5, 64 px, batch 32, AdamW, on one
and two threads (OpenMP threads waiting passively, as in the test suite), each measured in
the same run after 5 warm-up steps, the two layouts alternating, best of --repeats.
Usage: python bench/training_layout.py [--steps 20] [--repeats 3]
"""
import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its thread pool

import torch  # noqa: E402

from edgeexport.models import create_model  # noqa: E402

FAMILIES = ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")


def cpu_per_step(family: str, threads: int, channels_last: bool, steps: int) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = create_model(family, 0.5, 4).to(memory_format=layout).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(32, 3, 64, 64).contiguous(memory_format=layout)
    y = torch.randint(0, 4, (32,))
    for i in range(5 + steps):
        if i == 5:
            start = time.process_time()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.process_time() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("family              threads  NCHW ms/step  channels-last ms/step  ratio")
    for family in FAMILIES:
        for threads in (1, 2):
            runs = {False: [], True: []}
            for _ in range(args.repeats):
                for channels_last in (False, True):
                    runs[channels_last].append(
                        cpu_per_step(family, threads, channels_last, args.steps))
            nchw, last = min(runs[False]), min(runs[True])
            print(f"{family:<20}{threads:>7}  {nchw * 1e3:>12.0f}  {last * 1e3:>21.0f}  "
                  f"{last / nchw:.2f}×")


if __name__ == "__main__":
    main()
