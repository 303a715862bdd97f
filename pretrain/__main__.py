"""python -m pretrain MODEL [--steps N --hours H --resume --out DIR --export DIR --push-to-hub REPO ...]"""

import sys

from tinytorch import memory

from .config import parse_args
from .train import main


def run(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cfg = parse_args(argv)
    # A process setting, where training starts: keep each step's freed temporaries mapped for the
    # next (tinytorch/memory.py). main() sets the threads, once the run's settings are known.
    memory.tune_malloc()
    try:
        return main(cfg)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run())
