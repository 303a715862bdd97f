"""The demo fine-tune's wall time: 100 steps of tinytorch.training.train_step on a text, as the
Copilot demo runs them, from creating the optimizer to the last update.

Defaults (issue 6): batch 16, AdamW at lr 3e-3 (no weight decay; 5% warmup, then cosine to lr/10,
as demos/training.py), gradient clipping at 1.0, windows of the model's whole context (--context). The text is
tinytorch's own source code; the model is freshly initialized unless --checkpoint is given (the
time does not depend on the weights). PyTorch runs the same loop when installed.

    python benchmarks/finetune.py [--steps 100] [--batch 16] [--lr 3e-3] [--context 0] [--runs 3]
                                  [--copilot-embd 64 128] [--checkpoint FOLDER]

(The Copilot demo itself defaults to --batch 8 --context 64: demos/copilot.py.)
"""

import argparse
import glob
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (before numpy: it sets the BLAS thread count)

BUDGET = {"copilot-tiny": 1.5, "copilot": 5.0}  # seconds, issue 6


def corpus() -> str:
    files = sorted(glob.glob(os.path.join(harness.ROOT, "tinytorch", "**", "*.py"), recursive=True))
    return "\n".join(open(f, encoding="utf-8").read() for f in files)


def lr_at(step, lr, steps):
    from tinytorch.optim import cosine_lr

    return cosine_lr(step, lr, warmup_steps=max(1, steps // 20), total_steps=steps, min_lr=lr / 10)


def tinytorch_run(model, ids, args):
    import numpy as np

    from tinytorch.optim import AdamW, weight_decay_groups
    from tinytorch.training import sample_batch, train_step

    rng = np.random.default_rng(0)
    start = time.perf_counter()
    optimizer = AdamW(weight_decay_groups(model, 0.0), lr=args.lr)
    model.train()
    for step in range(args.steps):
        x, y = sample_batch(ids, args.batch, args.context or model.config.n_positions, rng)
        optimizer.set_lr(lr_at(step, args.lr, args.steps))
        loss, _ = train_step(model, optimizer, x, y, max_grad_norm=1.0, step=step + 1)
    return time.perf_counter() - start, loss


def torch_run(torch, model, ids, args):
    import numpy as np

    from torch_gpt import TorchGPT

    from tinytorch.training import sample_batch

    c = model.config
    net = TorchGPT(c.vocab_size, c.n_positions, c.n_embd, c.n_layer, c.n_head)
    net.load_tinytorch(model.state_dict())
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
    for step in range(args.steps):
        windows = sample_batch(ids, args.batch, args.context or c.n_positions, rng)
        x, y = (torch.from_numpy(np.ascontiguousarray(a)) for a in windows)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args.lr, args.steps)
        loss = torch.nn.functional.cross_entropy(net(x).reshape(-1, c.vocab_size), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        value = loss.item()
    return time.perf_counter() - start, value


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--context", type=int, default=0, help="window length; 0: the model's context")
    parser.add_argument("--runs", type=int, default=3, help="fresh fine-tunes per model; the median is shown")
    parser.add_argument("--checkpoint", nargs="*", default=[], help="checkpoint folders instead of fresh models")
    parser.add_argument("--no-torch", action="store_true")
    harness.add_common_args(parser)
    args = parser.parse_args()
    harness.setup_threads(args.threads, args.threading)
    import numpy as np

    import tinytorch
    from tinytorch.nn import GPT
    from tinytorch.text import CharTokenizer

    torch = None if args.no_torch else harness.torch_or_none(args.threads)
    malloc = harness.tune_malloc(args.no_tune_malloc)
    print(harness.machine(args.threads, torch, malloc))
    text = corpus()
    print(f"# {args.steps} steps of train_step, batch {args.batch}, AdamW lr {args.lr:g} (warmup + cosine), "
          f"clip 1.0, context {args.context or '= the model'}; text: tinytorch's source ({len(text):,} chars); "
          f"median of {args.runs} runs, wall seconds")
    print("| model | shape | tinytorch s | PyTorch s | budget |")
    print("|---|---|---:|---:|---|")
    if args.checkpoint:
        models = [(os.path.basename(f.rstrip("/")), "copilot" if "tiny" not in f else "copilot-tiny", f)
                  for f in args.checkpoint]
    else:
        models = [(label, name, config) for label, name, config in harness.shapes(["copilot-tiny", "copilot"],
                                                                                   args.copilot_embd)]
    for label, name, source in models:
        def fresh():
            if isinstance(source, str):
                return GPT.from_pretrained(source)
            tinytorch.manual_seed(0)
            return GPT(source)

        model = fresh()
        if isinstance(source, str):
            tokenizer = CharTokenizer.from_pretrained(source)
            ids = np.array(tokenizer.encode(text))
        else:  # a fresh model: any ids in its vocabulary will do; map characters onto them
            ids = np.frombuffer(text.encode("ascii", "replace"), dtype=np.uint8).astype(np.int64) % model.config.vocab_size
        ours, theirs = [], []
        for _ in range(args.runs):  # taking turns, fresh weights each time
            time.sleep(harness.gap(args))  # see harness.interleaved
            ours.append(tinytorch_run(fresh(), ids, args)[0])
            if torch:
                time.sleep(harness.gap(args))
                theirs.append(torch_run(torch, fresh(), ids, args)[0])
        seconds = harness.median(ours)
        budget = BUDGET.get(name)
        verdict = "" if budget is None else f"<= {budget:g} s {'met' if seconds <= budget else 'MISSED'}"
        torch_cell = f"{harness.median(theirs):.2f}" if torch else "-"
        print(f"| {label} | {harness.describe(model.config)} | {seconds:.2f} | {torch_cell} | {verdict} |", flush=True)


if __name__ == "__main__":
    main()
