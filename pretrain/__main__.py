"""python -m pretrain MODEL [--steps N --hours H --resume --out DIR --export DIR --push-to-hub REPO ...]"""

import os
import sys

from tinytorch import memory

from .config import parse_args
from .train import main


def run(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cfg = parse_args(argv)
    # Process settings, where training starts: keep each step's freed temporaries mapped for the
    # next (tinytorch/memory.py), and split each step's batch over the threads (tinytorch/parallel.py)
    memory.tune_malloc()
    try:
        with memory.num_threads(cfg.threads or min(2, os.cpu_count() or 1)):
            return main(cfg, argv)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run())
