"""The training text: by default the standard library of the Python running this script.

Files are split into train and validation by a hash of their path, so the split is the same on
every machine with the same Python, and no validation file is ever trained on.
"""

from __future__ import annotations

import glob
import hashlib
import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

MAX_FILE_BYTES = 2_000_000  # larger files (generated tables) teach little and cost much


@dataclass
class Corpus:
    root: str  # what was read: the stdlib folder or the --corpus argument
    train: list  # [(relative path, text)]
    val: list

    def fingerprint(self) -> str:
        """sha256 over every file's path, split and content: two runs with equal fingerprints
        trained and validated on the same text."""
        h = hashlib.sha256()
        for split, files in (("train", self.train), ("val", self.val)):
            for path, text in files:
                h.update(f"{split}\0{path}\0".encode())
                h.update(hashlib.sha256(text.encode("utf-8", "replace")).digest())
        return h.hexdigest()

    def describe(self) -> dict:
        return {
            "root": self.root,
            "train_files": len(self.train),
            "val_files": len(self.val),
            "train_chars": sum(len(t) for _, t in self.train),
            "val_chars": sum(len(t) for _, t in self.val),
            "fingerprint": self.fingerprint(),
            "split": "validation = files whose sha1(relative path) mod 1000 < val_fraction * 1000",
        }


def _is_test_file(relative: Path) -> bool:
    return any(part in ("test", "tests", "idle_test") or part.startswith("test_") for part in relative.parts)


def stdlib_files() -> tuple[Path, list[Path]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in root.rglob("*.py")
             if "site-packages" not in p.parts and not _is_test_file(p.relative_to(root))]
    return root, sorted(files)


def corpus_files(spec: str) -> tuple[Path, list[Path]]:
    """A file, a folder (every .py and .txt below it) or a glob."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path.parent, [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".py", ".txt"))
        if not files:
            raise ValueError(f"--corpus {spec}: the folder holds no .py or .txt files")
        return path, files
    matches = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
    if not matches:
        raise ValueError(f"--corpus {spec}: no such file or folder, and the pattern matches no files")
    return Path("."), matches


def _is_validation(relative: str, val_fraction: float) -> bool:
    bucket = int(hashlib.sha1(relative.encode()).hexdigest(), 16) % 1000
    return bucket < val_fraction * 1000


def load_corpus(spec: str = "", val_fraction: float = 0.1) -> Corpus:
    """Read and split the corpus. Unreadable, binary or empty input is a ValueError that says why."""
    root, files = corpus_files(spec) if spec else stdlib_files()
    train, val = [], []
    for path in files:
        if path.stat().st_size > MAX_FILE_BYTES:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            if spec and len(files) == 1:
                raise ValueError(f"--corpus {spec}: not UTF-8 text") from None
            continue  # a binary or non-UTF-8 file among many: skip it
        except OSError as err:
            raise ValueError(f"--corpus: cannot read {path} ({err.strerror})") from None
        if not text.strip():
            continue
        relative = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()
        (val if _is_validation(relative, val_fraction) else train).append((relative, text))
    if not train and not val:
        raise ValueError(f"--corpus {spec or root}: no non-empty UTF-8 text found")
    if not train or not val:  # the hash put every file on one side: hold out the last file,
        files = train + val     # or the end of the text when there is only one
        if len(files) > 1:
            train, val = files[:-1], files[-1:]
        else:
            path, text = files[0]
            cut = int(len(text) * (1 - val_fraction))
            train, val = [(path, text[:cut])], [(path + " (last part)", text[cut:])]
    return Corpus(str(root), train, val)


def main(argv=None) -> None:
    """python -m pretrain.corpus [train|val] [--corpus PATH]: print that split's file paths."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pretrain.corpus", description=main.__doc__)
    parser.add_argument("split", choices=["train", "val"], nargs="?", default="val")
    parser.add_argument("--corpus", default="", help="as for python -m pretrain (default: the stdlib)")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    args = parser.parse_args(argv)
    root, _ = corpus_files(args.corpus) if args.corpus else stdlib_files()
    corpus = load_corpus(args.corpus, args.val_fraction)
    try:
        for relative, _ in corpus.train if args.split == "train" else corpus.val:
            print(root / relative)
        sys.stdout.flush()
    except BrokenPipeError:  # `... | head`: the reader has all it wanted; leave quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        sys.exit(141)  # 128 + SIGPIPE, what the shell reports for a command that a pipe cut short


if __name__ == "__main__":
    main()
