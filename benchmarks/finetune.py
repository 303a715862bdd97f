"""The demo fine-tune's wall time: 100 steps of tinytorch.training.train_step on a text, as the
Copilot demo runs them, from creating the optimizer to the last update.

Defaults: the demo's own (demos/copilot.py): 100 steps, batch 8, windows of 64 characters, AdamW
at the demo's learning rate for the model's width (no weight decay; 5% warmup, then cosine to
lr/10, as demos/training.py), gradient clipping at 1.0. The text is tinytorch's own source code;
the model is freshly initialized unless --checkpoint is given (the time does not depend on the
weights). PyTorch runs the same loop when installed.

    python benchmarks/finetune.py [--steps 100] [--batch 8] [--context 64] [--lr LR] [--runs 3]
                                  [--copilot-embd 96] [--checkpoint FOLDER]
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


def lr(args, config) -> float:
    from demos.copilot import recommended_lr

    return args.lr or recommended_lr(config)


def context(args, config) -> int:
    return min(args.context or config.n_positions, config.n_positions)


def tinytorch_run(model, ids, args):
    """The demo's own loop (demos.training.train), timed from the optimizer's creation."""
    import numpy as np

    from demos.training import train
    from tinytorch.training import sample_batch

    rng = np.random.default_rng(0)
    window = context(args, model.config)
    start = time.perf_counter()
    for progress in train(model, lambda: sample_batch(ids, args.batch, window, rng), args.steps,
                          lr(args, model.config)):
        pass
    return time.perf_counter() - start, progress.loss


def torch_run(torch, model, ids, args):
    import numpy as np

    from torch_gpt import TorchGPT

    from demos.training import lr_at
    from tinytorch.training import sample_batch

    c = model.config
    net = TorchGPT(c.vocab_size, c.n_positions, c.n_embd, c.n_layer, c.n_head)
    net.load_tinytorch(model.state_dict())
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    rate, window = lr(args, c), context(args, c)
    optimizer = torch.optim.AdamW(net.parameters(), lr=rate, weight_decay=0.0)
    for step in range(args.steps):
        windows = sample_batch(ids, args.batch, window, rng)
        x, y = (torch.from_numpy(np.ascontiguousarray(a)) for a in windows)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, rate, args.steps)
        loss = torch.nn.functional.cross_entropy(net(x).reshape(-1, c.vocab_size), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        value = loss.item()
    return time.perf_counter() - start, value


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # defaults None: the demo's (read after numpy's thread settings are made: demos imports numpy)
    parser.add_argument("--steps", type=int, default=None, help="default: the demo's (100)")
    parser.add_argument("--batch", type=int, default=None, help="default: the demo's (8)")
    parser.add_argument("--lr", type=float, default=None, help="default: the demo's for the model's width")
    parser.add_argument("--context", type=int, default=None,
                        help="window length (default: the demo's, 64); 0: the model's context")
    parser.add_argument("--runs", type=int, default=3, help="fresh fine-tunes per model; the median is shown")
    parser.add_argument("--checkpoint", nargs="*", default=[], help="checkpoint folders instead of fresh models")
    parser.add_argument("--no-torch", action="store_true")
    harness.add_common_args(parser)
    args = parser.parse_args()
    torch = harness.start(args)
    import numpy as np

    import tinytorch
    from demos import copilot as demo
    from tinytorch.nn import GPT
    from tinytorch.text import CharTokenizer

    args.steps = args.steps or demo.STEPS
    args.batch = args.batch or demo.BATCH
    args.context = demo.CONTEXT if args.context is None else args.context
    text = corpus()
    print(f"# {args.steps} steps of the demo's training loop, batch {args.batch}, AdamW lr "
          f"{args.lr or 'as the demo (by width)'} (warmup + cosine), clip 1.0, context {args.context or '= the model'}; "
          f"text: tinytorch's source ({len(text):,} chars); median of {args.runs} runs, wall seconds")
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
            ours.append(tinytorch_run(fresh(), ids, args)[0])
            if torch:
                theirs.append(torch_run(torch, fresh(), ids, args)[0])
        seconds = harness.median(ours)
        budget = BUDGET.get(name)
        verdict = "" if budget is None else f"<= {budget:g} s {'met' if seconds <= budget else 'MISSED'}"
        torch_cell = f"{harness.median(theirs):.2f}" if torch else "-"
        print(f"| {label} | {harness.describe(model.config)} | {seconds:.2f} | {torch_cell} | {verdict} |", flush=True)


if __name__ == "__main__":
    main()
