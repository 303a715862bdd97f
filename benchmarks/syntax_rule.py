"""How often the syntax rule (tinytorch.code_syntax) would refuse real code: the figures behind
refusing a growing beam (`statement_may_parse`) and a finished line (`first_unparsable_line`).

Every line of real code that starts a statement is cut after each character that is not part of
a name (where Rules.may_grow asks), and each cut must be judged one that may still parse; every
such line, whole, must be judged to parse. The code: the standard library's validation files
(pretrain's split, where benchmarks/completion.py takes its places) and third-party packages
installed beside this Python (benchmarks/keystrokes.py's). Prints the counts, the first refusals,
and the time per check.

    python benchmarks/syntax_rule.py [--packages gradio numpy ...] [--examples 10]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keystrokes import PACKAGES, third_party_files  # noqa: E402

from tinytorch.code_layout import last_statement  # noqa: E402
from tinytorch.code_syntax import first_unparsable_line, statement_may_parse  # noqa: E402


def statement_starts(text: str):
    """(line, the Statement the lines before it left) for each line of `text` that starts a
    statement: not inside brackets or a string, not joined to the line before by a backslash."""
    before, joined = None, False
    for line in text.split("\n"):
        if line.strip() and (before is None or not before.continues) and not joined:
            yield line, before
        joined = line.rstrip().endswith("\\")
        before = last_statement([line], before)


def cuts(line: str):
    """The line cut after each character that is not part of a name (nor its indentation)."""
    for end in range(len(line) - len(line.lstrip(" ")) + 1, len(line)):
        if not (line[end - 1].isalnum() or line[end - 1] == "_"):
            yield line[:end]


def measure(files) -> dict:
    found = {"cuts": 0, "cuts refused": [], "lines": 0, "lines refused": [], "seconds": 0.0}
    start = time.perf_counter()
    for path, text in files:
        for line, before in statement_starts(text):
            found["lines"] += 1
            if first_unparsable_line([line], before) is not None:
                found["lines refused"].append((path, line))
            for cut in cuts(line):
                found["cuts"] += 1
                if not statement_may_parse(cut):
                    found["cuts refused"].append((path, cut))
    found["seconds"] = time.perf_counter() - start
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", nargs="*", default=list(PACKAGES), help="site-packages for third-party code")
    parser.add_argument("--examples", type=int, default=10, help="refusals to print of each kind")
    args = parser.parse_args()
    from pretrain.corpus import load_corpus

    print("| code | files | statement lines | refused | cuts between words | refused | µs per check |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    refused = []
    for label, files in (("standard library, validation split", load_corpus("", 0.1).val),
                         ("third-party: " + ", ".join(args.packages), third_party_files(args.packages))):
        found = measure(files)
        checks = found["cuts"] + found["lines"]
        print(f"| {label} | {len(files):,} | {found['lines']:,} | {len(found['lines refused']):,} | "
              f"{found['cuts']:,} | {len(found['cuts refused']):,} | {found['seconds'] / checks * 1e6:.0f} |")
        refused += found["lines refused"][:args.examples] + found["cuts refused"][:args.examples]
    for path, text in refused:
        print(f"refused: {path}: {text!r}")


if __name__ == "__main__":
    main()
