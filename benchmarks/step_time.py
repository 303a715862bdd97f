"""Median time of one training step (forward, cross-entropy, backward, clip, AdamW), tinytorch
against PyTorch eager on the same model and batch, in one run.

    python benchmarks/step_time.py [--repeats N]
"""

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tinytorch  # noqa: E402
from tinytorch.nn import GPT, GPTConfig  # noqa: E402
from tinytorch.nn import functional as F  # noqa: E402
from tinytorch.optim import AdamW, clip_grad_norm_, weight_decay_groups  # noqa: E402

SHAPES = {  # name: (n_embd, n_layer, n_head, context)
    "level1": (16, 1, 2, 8),
    "copilot-tiny": (32, 2, 2, 64),
    "copilot": (64, 4, 4, 128),
    "larger": (64, 4, 4, 128),
}
VOCAB = 98


def median_ms(step, repeats, warmup=3):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def tinytorch_step(config, batch):
    tinytorch.manual_seed(0)
    model = GPT(config)
    opt = AdamW(weight_decay_groups(model, 0.1), lr=1e-3)
    data = np.random.default_rng(0).integers(0, VOCAB, (batch, config.n_positions + 1))
    x, y = data[:, :-1], data[:, 1:]

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return model, step


def torch_step(model, config, batch):
    import torch

    from torch_gpt import TorchGPT

    net = TorchGPT(VOCAB, config.n_positions, config.n_embd, config.n_layer, config.n_head)
    net.load_tinytorch(model.state_dict())
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.1)
    data = torch.randint(0, VOCAB, (batch, config.n_positions + 1))
    x, y = data[:, :-1], data[:, 1:]

    def step():
        loss = torch.nn.functional.cross_entropy(net(x).reshape(-1, VOCAB), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--shapes", nargs="*", default=["level1", "copilot-tiny", "copilot", "larger"])
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 16, 64])
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(2)
        has_torch = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    except ImportError:
        has_torch = None
    print(f"# {platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}, "
          f"{has_torch or 'PyTorch not installed: tinytorch column only'}")
    print(f"{'shape':<14}{'batch':>6}{'tinytorch ms':>14}{'torch ms':>10}{'ratio':>7}")
    for name in args.shapes:
        n_embd, n_layer, n_head, ctx = SHAPES[name]
        config = GPTConfig(vocab_size=VOCAB, n_positions=ctx, n_embd=n_embd, n_layer=n_layer, n_head=n_head)
        for batch in args.batches:
            model, step = tinytorch_step(config, batch)
            ours = median_ms(step, args.repeats)
            line = f"{name:<14}{batch:>6}{ours:>14.2f}"
            if has_torch:
                theirs = median_ms(torch_step(model, config, batch), args.repeats)
                line += f"{theirs:>10.2f}{ours / theirs:>7.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
