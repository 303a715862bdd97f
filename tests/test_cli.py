"""python -m tinytorch {generate, eval, download, push}: in-process through main(argv), and as a real
subprocess. Outputs must equal what the library computes; failures are one line on stderr."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinytorch import __main__ as cli
from tinytorch import completion
from tinytorch.checkpoint import save_pretrained
from tinytorch.evaluate import text_metrics
from tinytorch.nn import GPT
from tinytorch.text import CharTokenizer

from conftest import tiny_gpt
from test_hub import TOKEN, checkpoint_files, hub, hub_env, offline  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tokenizer():
    return CharTokenizer("abcdefgh\n")  # 11 ids, tiny_gpt's vocabulary


@pytest.fixture
def model():
    return tiny_gpt(seed=4)


@pytest.fixture
def folder(tmp_path, model, tokenizer):
    return save_pretrained(model, tmp_path / "ckpt", tokenizer=tokenizer)


def run(capsys, *argv):
    """(exit status, stdout, stderr) of main(argv)."""
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def run_subprocess(tmp_path, *argv, stderr=None, **env):
    """python -m tinytorch in a fresh interpreter, with its own HF_HOME and no token or Hub address
    from the machine's environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE_"))}
    base.update(HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                HF_ENDPOINT="http://127.0.0.1:9")  # a dead loopback port unless a test passes FakeHub's
    base.update(env)
    # From a folder of its own, as a user runs it: never the repo root, where checkpoints/ happens to be.
    cwd = tmp_path / "elsewhere"
    cwd.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "tinytorch", *map(str, argv)], cwd=cwd, env=base,
                          stdout=subprocess.PIPE, stderr=stderr or subprocess.PIPE, text=True, timeout=60)


# ================================================================== generate
def test_generate_prints_what_model_generate_gives(capsys, folder, model, tokenizer):
    status, out, err = run(capsys, "generate", folder, "abc\nde", "--max-new-tokens", 30, "--temperature", 0.9,
                           "--top-k", 5, "--top-p", 0.95, "--seed", 11)
    ids = model.generate(tokenizer.encode("abc\nde"), 30, temperature=0.9, top_k=5, top_p=0.95, seed=11)
    assert (status, err) == (0, "")
    assert out == tokenizer.decode(ids) + "\n"
    assert out.startswith("abc\nde") and len(ids) == 6 + 30  # 30 new ids, well past the 8-id window


@pytest.mark.parametrize("stop", ["line", "block"])
def test_generate_beam_search_prints_the_best_completions_with_log_probabilities(capsys, folder, model, tokenizer,
                                                                                 stop):
    status, out, err = run(capsys, "generate", folder, "ab\nc", "--max-new-tokens", 12, "--num-beams", 4,
                           "--stop", stop, "--num-return-sequences", 3)
    found = model.generate(tokenizer.encode("ab\nc"), 12, num_beams=4, length_penalty=0.0, stop=stop,
                           num_return_sequences=3, tokenizer=tokenizer, output_scores=True, constraints=True)
    if stop == "line":
        assert (status, err) == (0, "") and len(found) == 3
        assert out == "".join(f"# {i}: log-probability {s.logprob:.3f}\n{tokenizer.decode(s.ids)}\n"
                              for i, s in enumerate(found, start=1))
    else:  # this model writes no block that ends (a blank line) within 12 characters: only the prompt
        assert (status, out, found) == (0, "ab\nc\n", []) and "no completion reached its stop" in err
    status, out, err = run(capsys, "generate", folder, "ab\nc", "--max-new-tokens", 12, "--num-beams", 4,
                           "--stop", stop, "--num-return-sequences", 3, "--no-constraints")
    found = model.generate(tokenizer.encode("ab\nc"), 12, num_beams=4, length_penalty=0.0, stop=stop,
                           num_return_sequences=3, tokenizer=tokenizer, output_scores=True)
    assert out == "".join(f"# {i}: log-probability {s.logprob:.3f}\n{tokenizer.decode(s.ids)}\n"
                          for i, s in enumerate(found, start=1))


def test_generate_stop_word_prints_the_next_word(capsys, folder, model, tokenizer):
    """--stop word: greedy, to the end of the next identifier (tinytorch.completion.word_options)."""
    for prompt in ("ab\nc", "hag", "a\nb"):
        status, out, err = run(capsys, "generate", folder, prompt, "--stop", "word")
        ids = model.generate(tokenizer.encode(prompt), tokenizer=tokenizer, **completion.word_options())
        assert (status, out) == (0, tokenizer.decode(ids) + "\n")
        assert err == ("" if len(ids) > len(prompt) else
                       f"note: no completion reached its stop within {completion.MAX_NEW_TOKENS} characters "
                       "(--max-new-tokens)\n")


def test_generate_prints_the_prompt_alone_when_no_completion_finishes(capsys, folder):
    status, out, err = run(capsys, "generate", folder, "ab\nc", "--max-new-tokens", 1)
    assert (status, out) == (0, "ab\nc\n") and "no completion reached its stop within 1 characters" in err


def test_generate_completes_the_line_by_default_as_the_demo_does(capsys, folder, model, tokenizer):
    """No decoding flag: the line completion of tinytorch.completion (a beam search to the newline),
    not free sampling; `--stop none` lifts the stop and --max-new-tokens still caps."""
    status, out, err = run(capsys, "generate", folder, "ab\nc")
    best = model.generate(tokenizer.encode("ab\nc"), tokenizer=tokenizer, **completion.beam_options("line"))
    assert (status, err) == (0, "")
    assert out == tokenizer.decode(best) + "\n"
    status, out, _ = run(capsys, "generate", folder, "ab\nc", "--stop", "none", "--max-new-tokens", 9)
    best = model.generate(tokenizer.encode("ab\nc"), tokenizer=tokenizer,
                          **{**completion.beam_options("line"), "stop": None, "max_new_tokens": 9})
    assert status == 0 and out == tokenizer.decode(best) + "\n" and len(best) == 4 + 9


def test_generate_repetition_guard_flags_reach_the_library(capsys, folder, model, tokenizer):
    status, out, _ = run(capsys, "generate", folder, "abc", "--max-new-tokens", 20, "--temperature", 1.0,
                         "--seed", 3, "--repetition-penalty", 1.5, "--no-repeat-ngram-size", 3)
    ids = model.generate(tokenizer.encode("abc"), 20, temperature=1.0, seed=3, repetition_penalty=1.5,
                         no_repeat_ngram_size=3)
    assert status == 0 and out == tokenizer.decode(ids) + "\n"
    assert run(capsys, "generate", folder, "abc", "--num-beams", 2, "--num-return-sequences", 3)[0] == 1


def test_generate_as_a_subprocess_greedy(tmp_path, folder, model, tokenizer):
    done = run_subprocess(tmp_path, "generate", folder, "hag", "--temperature", 0, "--max-new-tokens", 12)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == tokenizer.decode(model.generate(tokenizer.encode("hag"), 12, temperature=0.0)) + "\n"


@pytest.mark.parametrize("name", ["copilot-tiny", "checkpoints/copilot-tiny"])
def test_shipped_checkpoints_by_name_from_another_folder(tmp_path, name):
    shipped = REPO / "checkpoints" / "copilot-tiny"
    model, tokenizer = GPT.from_pretrained(shipped), CharTokenizer.from_pretrained(shipped)
    done = run_subprocess(tmp_path, "generate", name, "def ", "--temperature", 0, "--max-new-tokens", 30)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == tokenizer.decode(model.generate(tokenizer.encode("def "), 30, temperature=0.0)) + "\n"


@pytest.mark.parametrize("name", ["checkpoints/copilot2", "./my-copilot", "copilot2", "runs/copilot/step-9"])
def test_a_path_that_names_no_folder_is_a_missing_folder_not_a_hub_id(tmp_path, name):
    done = run_subprocess(tmp_path, "generate", name, "def ")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (f"error: {name}: no such checkpoint folder (in {tmp_path / 'elsewhere'}); shipped "
                           "checkpoints: copilot, copilot-large, copilot-tiny, level1 (by name, from any folder); a Hub repo id "
                           "looks like 'user/model'\n")


def test_generate_notes_prompt_characters_outside_the_vocabulary(capsys, folder):
    status, out, err = run(capsys, "generate", folder, "abz!", "--max-new-tokens", 1, "--temperature", 0)
    assert status == 0 and out.startswith("ab\ufffd\ufffd")
    assert err == "note: 2 prompt character(s) outside the vocabulary became <unk>: '!' 'z'\n"


# ================================================================== eval
def test_eval_prints_the_metrics_text_metrics_computes(capsys, tmp_path, folder, model, tokenizer):
    (tmp_path / "a.txt").write_text("abcabcabc defg\nhhh" * 3)  # longer than the context: several windows
    (tmp_path / "b.py").write_bytes("gfedcba\r\nxyz é\n".encode())  # CRLF, and characters outside the vocabulary
    status, out, err = run(capsys, "eval", folder, tmp_path / "a.txt", tmp_path / "b.py")
    assert (status, err) == (0, "")
    report = json.loads(out)
    texts = [(tmp_path / name).read_bytes().decode() for name in ("a.txt", "b.py")]
    expected = text_metrics(model, tokenizer, texts)
    assert report["bits_per_char"] == expected["bits_per_char"] > 0
    assert report["next_char_accuracy"] == expected["next_char_accuracy"]
    assert report["loss"] == expected["loss"]
    assert report["characters"] == expected["characters"] == (len(texts[0]) - 1) + (len("gfedcba\nxyz é\n") - 1)
    assert report["unknown_characters"] == 3 + 5  # the vocabulary has no ' ': a.txt's 3, b.py's "xyz é"
    assert report["files"] == [str(tmp_path / "a.txt"), str(tmp_path / "b.py")] and report["checkpoint"] == str(folder)


def test_eval_shows_progress_on_a_terminal_and_prints_only_json(tmp_path, folder, model, tokenizer):
    import fcntl
    import pty
    import struct
    import termios

    text = "abcabcabc defg\nhhh" * 40  # 720 characters, 719 scored
    (tmp_path / "a.txt").write_text(text)
    terminal, child_end = pty.openpty()
    fcntl.ioctl(child_end, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 24 x 100, as a terminal has
    try:
        done = run_subprocess(tmp_path, "eval", folder, tmp_path / "a.txt", stderr=child_end)
        os.close(child_end)
        shown = b""
        while True:
            try:
                chunk = os.read(terminal, 4096)
            except OSError:  # EIO: the writer is gone and everything is read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(terminal)
    assert done.returncode == 0
    report = json.loads(done.stdout)  # stdout holds the JSON alone
    assert report["bits_per_char"] == text_metrics(model, tokenizer, [text])["bits_per_char"]
    assert re.search(rb"scoring: +\d+%.*/719 ", shown), shown  # the bar, on the terminal


def test_eval_piped_shows_no_progress(tmp_path, folder):
    (tmp_path / "a.txt").write_text("abcabcabc defg\nhhh" * 40)
    done = run_subprocess(tmp_path, "eval", folder, tmp_path / "a.txt")
    assert (done.returncode, done.stderr) == (0, "") and json.loads(done.stdout)["characters"] == 719


# ================================================================== download and push
def test_push_then_download_against_the_hub(capsys, hub_env, tmp_path, folder, model):
    status, out, err = run(capsys, "push", folder, "me/cli", "--private", "--message", "from the CLI")
    commit = hub_env.commits("me/cli")[-1]
    assert (status, err, out) == (0, "", f"{hub_env.endpoint}/me/cli/commit/{commit.sha}\n")
    assert commit.message == "from the CLI" and hub_env.repos["me/cli"].private

    status, out, err = run(capsys, "download", "me/cli", "--to", tmp_path / "copy")
    assert (status, err, out) == (0, "", f"{tmp_path / 'copy'}\n")
    assert {p.name: p.read_bytes() for p in (tmp_path / "copy").iterdir()} == \
        {p.name: p.read_bytes() for p in folder.iterdir()}

    status, out, err = run(capsys, "download", "me/cli", "--revision", commit.sha)
    assert status == 0 and Path(out.strip()).name == commit.sha
    np.testing.assert_array_equal(GPT.from_pretrained(out.strip())(np.array([[2, 3]])).data,
                                  model.eval()(np.array([[2, 3]])).data)


def test_download_to_a_folder_of_ones_own_refuses_and_deletes_nothing(capsys, hub_env, tmp_path, folder):
    assert run(capsys, "push", folder, "me/mine")[0] == 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text("{}")
    (mine / "notes.txt").write_text("mine")
    status, out, err = run(capsys, "download", "me/mine", "--to", mine)
    assert (status, out) == (1, "") and err.startswith(f"error: {mine}: is not a checkpoint folder")
    assert "would delete notes.txt" in err and err.count("\n") == 1
    assert sorted(os.listdir(mine)) == ["config.json", "notes.txt"] and (mine / "notes.txt").read_text() == "mine"

    # `--to .` in a project folder, as a user types it
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE_"))}
    done = subprocess.run([sys.executable, "-m", "tinytorch", "download", "me/mine", "--to", "."], cwd=mine,
                          env={**base, "HF_HOME": str(tmp_path / "hf-home"), "HF_ENDPOINT": hub_env.endpoint},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.startswith("error: .: is not a checkpoint folder"), done.stderr
    assert sorted(os.listdir(mine)) == ["config.json", "notes.txt"]

    copy = tmp_path / "copy"
    assert run(capsys, "download", "me/mine", "--to", copy)[0] == 0
    assert run(capsys, "download", "me/mine", "--to", copy)[0] == 0  # a checkpoint it wrote: replaced
    assert sorted(os.listdir(copy)) == sorted(os.listdir(folder))


def test_download_and_push_as_a_subprocess_read_the_environment(hub_env, tmp_path, folder):
    done = run_subprocess(tmp_path, "push", folder, "me/sub", HF_ENDPOINT=hub_env.endpoint, HF_TOKEN=TOKEN)
    assert done.returncode == 0 and done.stdout.startswith(f"{hub_env.endpoint}/me/sub/commit/"), done.stderr
    done = run_subprocess(tmp_path, "download", "me/sub", HF_ENDPOINT=hub_env.endpoint)
    assert (done.returncode, done.stderr) == (0, "")
    snapshot = Path(done.stdout.strip())
    assert snapshot.is_relative_to(tmp_path / "hf-home") and (snapshot / "model.safetensors").exists()
    assert TOKEN not in done.stdout + done.stderr


# ================================================================== failures: one line on stderr, no traceback
FAILURES = {
    "no such checkpoint": (["generate", "{tmp}/nope", "a"], r"^error: .*/nope: no such checkpoint folder"),
    "corrupt checkpoint": (["generate", "{corrupt}", "a"], r"^error: .*config\.json: not valid JSON"),
    "bad sampling argument": (["generate", "{folder}", "a", "--top-p", "1.5"], r"^error: top_p must be in \(0, 1\]"),
    "empty prompt": (["generate", "{folder}", ""], r"^error: generation needs a prompt"),
    "bad usage": (["generate", "{folder}", "a", "--top-k", "many"], r"^error: argument --top-k: invalid int value"),
    "unknown command": (["train", "x"], r"^error: argument COMMAND: invalid choice: 'train'"),
    "missing eval file": (["eval", "{folder}", "{tmp}/missing.txt"], r"^error: .*/missing\.txt: no such file or folder$"),
    "eval of a folder": (["eval", "{folder}", "{tmp}"], r"^error: .*: is a folder, not a file$"),
    "binary eval file": (["eval", "{folder}", "{tmp}/blob.bin"], r"^error: .*/blob\.bin: looks binary"),
    "non-UTF-8 eval file": (["eval", "{folder}", "{tmp}/latin1.txt"], r"^error: .*/latin1\.txt: not UTF-8 text \(byte 3\)$"),
    "too little to score": (["eval", "{folder}", "{tmp}/one.txt"], r"^error: nothing to score"),
    "repo not found": (["download", "me/nope"], r"^error: me/nope: no such model repo on the Hub"),
    "revision not found": (["download", "me/tiny", "--revision", "v9"], r"^error: me/tiny: has no revision 'v9'"),
    "push of a missing folder": (["push", "{tmp}/nope", "me/x"], r"^error: .*/nope: no such checkpoint folder$"),
}


@pytest.mark.parametrize("argv, message", FAILURES.values(), ids=FAILURES.keys())
def test_failures_are_one_line_on_stderr(capsys, hub_env, tmp_path, folder, tokenizer, argv, message):
    hub_env.add_commit("me/tiny", checkpoint_files(tmp_path, tiny_gpt(), tokenizer, "tiny"))
    (tmp_path / "blob.bin").write_bytes(b"ab\0cd")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "one.txt").write_text("a")
    corrupt = save_pretrained(tiny_gpt(), tmp_path / "corrupt", tokenizer=tokenizer)
    (corrupt / "config.json").write_text("{oops")
    argv = [a.format(tmp=tmp_path, folder=folder, corrupt=corrupt) for a in argv]
    status, out, err = run(capsys, *argv)
    assert status != 0 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert re.match(message, err), err


def test_offline_with_nothing_cached_names_the_shipped_checkpoints(capsys, hub_env, offline):
    status, out, err = run(capsys, "generate", "me/never", "a")
    assert (status, out) == (1, "")
    assert err == ("error: me/never: not in the local Hub cache, and HF_HUB_OFFLINE is set so nothing can be "
                   "downloaded; offline, use a shipped checkpoint: copilot, copilot-large, copilot-tiny, level1 (by name, from any "
                   "folder)\n")


def test_push_without_a_token(capsys, hub_env, folder, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    status, out, err = run(capsys, "push", folder, "me/x")
    assert status == 1 and err.startswith("error: no Hugging Face token: set HF_TOKEN or run `hf auth login`")


def test_ctrl_c_is_one_line_and_status_130(capsys, folder, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("tinytorch.pretrained.load", interrupted)
    assert run(capsys, "generate", folder, "a") == (130, "", "error: interrupted\n")


def test_a_failure_in_a_subprocess_is_one_line(tmp_path):
    done = run_subprocess(tmp_path, "eval", tmp_path / "nope", tmp_path / "missing.txt")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == f"error: {tmp_path / 'missing.txt'}: no such file or folder\n"


@pytest.mark.parametrize("command", ["generate", "eval", "download", "push"])
def test_help_for_each_command(capsys, command):
    status, out, err = run(capsys, command, "--help")
    assert (status, err) == (0, "") and out.startswith(f"usage: python -m tinytorch {command}")


def test_help_lists_the_commands(capsys):
    status, out, _ = run(capsys, "--help")
    assert status == 0 and all(c in out for c in ("generate", "eval", "download", "push"))
