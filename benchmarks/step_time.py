"""Median time of one training step, tinytorch against PyTorch eager on the same model and batch,
measured in one run, taking turns.

A step is what pretraining and the demo fine-tune run: forward, cross-entropy, backward,
gradient clipping at 1.0, AdamW (weight decay 0.1 on matrices), reading the loss. tinytorch runs
tinytorch.training.train_step; PyTorch runs the same GPT-2 (benchmarks/torch_gpt.py, the same
weights) with torch.optim.AdamW and torch.nn.utils.clip_grad_norm_.

    python benchmarks/step_time.py [--repeats 30] [--shapes level1 copilot-tiny copilot larger]
                                   [--batches 1 16 64] [--copilot-embd 96] [--threads 2]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (before numpy: it sets the BLAS thread count)


def tinytorch_step(config, batch):
    import numpy as np

    import tinytorch
    from tinytorch.nn import GPT
    from tinytorch.optim import AdamW, weight_decay_groups
    from tinytorch.training import train_step

    tinytorch.manual_seed(0)
    model = GPT(config)
    optimizer = AdamW(weight_decay_groups(model, 0.1), lr=1e-3)
    data = np.random.default_rng(0).integers(0, config.vocab_size, (batch, config.n_positions + 1))
    x, y = data[:, :-1], data[:, 1:]
    return model, lambda: train_step(model, optimizer, x, y, max_grad_norm=1.0)


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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--shapes", nargs="*", default=list(harness.SHAPES), choices=list(harness.SHAPES))
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 16, 64])
    parser.add_argument("--no-torch", action="store_true", help="tinytorch only")
    harness.add_common_args(parser)
    args = parser.parse_args()
    torch = harness.start(args)
    print(f"# training step: forward, cross-entropy, backward, clip 1.0, AdamW; median ms of "
          f"{args.repeats}, tinytorch and PyTorch taking turns "
          f"(bursts of 5 steps, each after 2 untimed ones)")
    print("| shape | model | batch | tinytorch ms | PyTorch ms | ratio | target |")
    print("|---|---|---:|---:|---:|---:|---|")
    for label, name, config in harness.shapes(args.shapes, args.copilot_embd):
        for batch in args.batches:
            model, ours = tinytorch_step(config, batch)
            fns = {"tinytorch": ours}
            if torch:
                fns["torch"] = torch_step(torch, model, config, batch)
            times = harness.interleaved(fns, args.repeats)
            ours_ms = 1000 * harness.median(times["tinytorch"])
            target = harness.STEP_TARGETS.get((name, batch))
            if torch:
                theirs_ms = 1000 * harness.median(times["torch"])
                ratio = ours_ms / theirs_ms
                verdict = "" if target is None else f"<= {target} {'met' if ratio <= target else 'MISSED'}"
                cells = f"{theirs_ms:.2f} | {ratio:.2f} | {verdict}"
            else:
                cells = "- | - | " + ("" if target is None else f"<= {target}")
            print(f"| {label} | {harness.describe(config)} | {batch} | {ours_ms:.2f} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
