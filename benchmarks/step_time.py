"""Median time of one training step, tinytorch against PyTorch eager on the same model and batch,
measured in one run, taking turns; and how much of the machine's matrix-multiply rate it reaches.

A step is what pretraining and the demo fine-tune run: forward, cross-entropy, backward,
gradient clipping at 1.0, AdamW (weight decay 0.1 on matrices), reading the loss. tinytorch runs
it twice: as tinytorch.training.train_step, and as the plain loop the README's tour teaches
(`loss = F.cross_entropy(model(x).reshape(-1, V), y.reshape(-1))`, zero_grad, backward,
clip_grad_norm_, step). PyTorch runs the same GPT-2 (benchmarks/torch_gpt.py, the same weights)
with torch.optim.AdamW and torch.nn.utils.clip_grad_norm_.

By default nothing is set for tinytorch (--threading default): no thread or allocator settings,
as a student's script runs it; PyTorch gets --threads threads.

Before each shape, numpy multiplies matrices of the step's linear layers' shapes (forward, and
backward's two products per layer), BLAS on --threads threads: that rate is the machine's own
sgemm rate at these shapes. The step's rate counts every multiply-add of its matrix products
(linears, head, and attention over the full T x T square, as PyTorch's eager attention does);
"of sgemm" is the step's rate over that reference.

    python benchmarks/step_time.py [--repeats 30] [--shapes level1 copilot-tiny copilot larger]
                                   [--batches 1 16 64] [--copilot-embd 96] [--threads 2]
                                   [--threading default|tinytorch|blas]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (before numpy: it sets the BLAS thread count)


def tinytorch_steps(config, batch):
    """(model, train_step closure, plain-loop closure), each on its own copy of the same model."""
    import numpy as np

    import tinytorch
    from tinytorch.nn import GPT
    from tinytorch.nn import functional as F
    from tinytorch.optim import AdamW, clip_grad_norm_
    from tinytorch.training import train_step

    data = np.random.default_rng(0).integers(0, config.vocab_size, (batch, config.n_positions + 1))
    x, y = data[:, :-1], data[:, 1:]
    V = config.vocab_size

    def build():
        tinytorch.manual_seed(0)
        model = GPT(config)
        return model, AdamW(model.optimizer_groups(0.1), lr=1e-3)

    model, optimizer = build()
    plain_model, plain_optimizer = build()

    def plain_loop():  # the README's tour loop, with clipping
        loss = F.cross_entropy(plain_model(x).reshape(-1, V), y.reshape(-1))
        plain_optimizer.zero_grad()
        loss.backward()
        clip_grad_norm_(plain_model.parameters(), 1.0)
        plain_optimizer.step()
        return loss.item()

    return model, lambda: train_step(model, optimizer, x, y, max_grad_norm=1.0), plain_loop


def torch_step(torch, model, config, batch):
    from torch_gpt import TorchGPT

    net = TorchGPT(config.vocab_size, config.n_positions, config.n_embd, config.n_layer, config.n_head)
    net.load_tinytorch(model.state_dict())
    embeddings = {id(net.wte.weight), id(net.wpe.weight)}
    decay = [p for p in net.parameters() if p.ndim >= 2 and id(p) not in embeddings]
    no_decay = [p for p in net.parameters() if p.ndim < 2 or id(p) in embeddings]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=1e-3)
    data = torch.randint(0, config.vocab_size, (batch, config.n_positions + 1),
                         generator=torch.Generator().manual_seed(0))
    x, y = data[:, :-1], data[:, 1:]

    def step():
        loss = torch.nn.functional.cross_entropy(net(x).reshape(-1, config.vocab_size), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        return loss.item()

    return step


def linear_shapes(config, batch):
    """The step's linear-layer products, (m, k, n) for an (m, k) @ (k, n): forward, then the
    backward's grad_x (N, out) @ (out, in) and grad_w (in, N) @ (N, out), for every layer and
    the tied head."""
    N, C = batch * config.n_positions, config.n_embd
    layers = [(C, 3 * C), (C, C), (C, 4 * C), (4 * C, C)] * config.n_layer + [(C, config.vocab_size)]
    return [s for i, o in layers for s in ((N, i, o), (N, o, i), (i, N, o))]


def step_flops(config, batch) -> float:
    """Multiply-adds x 2 of a step's matrix products: linears (forward + 2 backward) and
    attention's q k^T and w v over the full T x T square (forward + 2 backward each)."""
    linear = sum(2.0 * m * k * n for m, k, n in linear_shapes(config, batch))
    T, C = config.n_positions, config.n_embd
    attention = config.n_layer * 3 * 2 * (2.0 * batch * T * T * C)
    return linear + attention


def sgemm_rate(config, batch, threads, repeats=7) -> float:
    """numpy's GFLOP/s on the step's linear shapes, BLAS on `threads` threads: the median of
    `repeats` timings of all the products one after another."""
    import numpy as np

    from tinytorch.threads import blas_threads, set_blas_threads

    rng = np.random.default_rng(0)
    operands = []
    for m, k, n in linear_shapes(config, batch):
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        operands.append((a, b, np.empty((m, n), dtype=np.float32)))
    before = blas_threads()
    set_blas_threads(threads)
    try:
        times = []
        for _ in range(repeats + 2):
            start = time.perf_counter()
            for a, b, out in operands:
                np.matmul(a, b, out=out)
            times.append(time.perf_counter() - start)
    finally:
        if before is not None:
            set_blas_threads(before)
    flops = sum(2.0 * m * k * n for m, k, n in linear_shapes(config, batch))
    return flops / harness.median(times[2:]) / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--shapes", nargs="*", default=list(harness.SHAPES), choices=list(harness.SHAPES))
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 16, 64])
    parser.add_argument("--no-torch", action="store_true", help="tinytorch only")
    harness.add_common_args(parser)
    parser.set_defaults(threading="default")
    args = parser.parse_args()
    torch = harness.start(args)
    print(f"# training step: forward, cross-entropy, backward, clip 1.0, AdamW; median ms of "
          f"{args.repeats}; train_step, the plain loop and PyTorch taking turns "
          f"(bursts of 5 steps, each after 2 untimed ones); GFLOP/s of the train_step, and of numpy's "
          f"sgemm at the step's linear shapes on {args.threads} BLAS threads")
    print("| shape | model | batch | train_step ms | plain loop ms | PyTorch ms | train_step / PyTorch "
          "| plain / PyTorch | plain / train_step | GFLOP/s | sgemm GFLOP/s | of sgemm |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, name, config in harness.shapes(args.shapes, args.copilot_embd):
        for batch in args.batches:
            sgemm = sgemm_rate(config, batch, args.threads)
            model, ours, plain = tinytorch_steps(config, batch)
            fns = {"tinytorch": ours, "plain": plain}
            if torch:
                fns["torch"] = torch_step(torch, model, config, batch)
            times = harness.interleaved(fns, args.repeats)
            ours_ms = 1000 * harness.median(times["tinytorch"])
            plain_ms = 1000 * harness.median(times["plain"])
            if torch:
                theirs_ms = 1000 * harness.median(times["torch"])
                torch_cells = f"{theirs_ms:.2f} | {ours_ms / theirs_ms:.2f} | {plain_ms / theirs_ms:.2f}"
            else:
                torch_cells = "- | - | -"
            gflops = step_flops(config, batch) / (ours_ms / 1000) / 1e9
            print(f"| {label} | {harness.describe(config)} | {batch} | {ours_ms:.2f} | {plain_ms:.2f} | "
                  f"{torch_cells} | {plain_ms / ours_ms:.2f} | {gflops:.3g} | {sgemm:.3g} | "
                  f"{gflops / sgemm:.0%} |", flush=True)


if __name__ == "__main__":
    main()
