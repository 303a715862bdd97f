"""The demo's fine-tune measures learning on text it never trains on: the split, the held-out
evaluations, and the weights it keeps (early stopping)."""

import math

import numpy as np
import pytest

import tinytorch
from demos import training
from demos.copilot import Copilot, CopilotSession
from demos.heldout import MIN_LINES, split_text
from demos.training import Progress
from tinytorch.nn import GPT, GPTConfig

LINES = [f"value_{i} = compute({i})\n" for i in range(30)]


def test_the_last_fifth_of_the_lines_is_held_out_at_a_line_boundary():
    split = split_text("".join(LINES))
    assert split.train == "".join(LINES[:24]) and split.held_out == "".join(LINES[24:])
    assert split.first_held_line == 25
    assert split.describe() == ("Training on lines 1-24; holding out lines 25-30 "
                                f"({len(''.join(LINES[24:])):,} characters), which it never sees.")
    assert split_text("".join(LINES), 50).first_held_line == 16


def test_the_held_out_part_starts_at_code_not_at_a_blank_line():
    lines = LINES[:24] + ["\n"] + LINES[24:]  # a blank line 25 where the cut would fall
    split = split_text("".join(lines), 100 * 7 / 31)  # the last 7 of 31 lines start with the blank line
    assert split.first_held_line == 26 and split.held_out == "".join(LINES[24:])
    assert split.train + split.held_out == "".join(lines)


def test_a_short_text_or_zero_percent_holds_nothing_out():
    short = "".join(LINES[:MIN_LINES - 1]) + "\n\n\n"  # blank lines do not count
    for split in (split_text(short), split_text("".join(LINES), 0)):
        assert not split.has_held_out and split.held_out == "" and split.first_held_line is None
        assert "Nothing is held out" in split.describe()
    assert split_text(short).train == short


def tiny_model():
    tinytorch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=20, n_positions=8, n_embd=8, n_layer=1, n_head=2))


def weights(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("keep_best", [True, False])
def test_the_run_keeps_the_weights_of_its_best_held_out_evaluation(keep_best):
    """A held-out 'loss' scripted by call: lowest at the third evaluation (step 20)."""
    model, seen = tiny_model(), []
    scripted = iter([5.0, 4.0, 3.0, 3.5, 4.5])

    def held_out(m):
        seen.append(weights(m))
        return next(scripted)

    data = np.random.default_rng(0).integers(0, 20, (4, 9))
    run = list(training.train(model, lambda: (data[:, :-1], data[:, 1:]), 40, 1e-2, held_out=held_out,
                              eval_every=10, keep_best=keep_best))
    assert [(p.step, p.held_out) for p in run if p.held_out is not None] == [
        (0, 5.0), (10, 4.0), (20, 3.0), (30, 3.5), (40, 4.5)]
    assert run[0].step == 0 and math.isnan(run[0].loss) and len(run) == 41
    assert (run[-1].best_step, run[-1].best_held_out) == (20, 3.0)
    kept = seen[2] if keep_best else seen[4]  # the step-20 evaluation's weights, or the last step's
    assert all(np.array_equal(v, kept[k]) for k, v in model.state_dict().items())
    assert not all(np.array_equal(v, seen[2][k]) for k, v in seen[4].items())  # the two differ


def test_without_a_held_out_part_the_loop_is_as_before():
    model = tiny_model()
    data = np.random.default_rng(0).integers(0, 20, (4, 9))
    run = list(training.train(model, lambda: (data[:, :-1], data[:, 1:]), 5, 1e-2))
    assert [p.step for p in run] == [1, 2, 3, 4, 5] and all(p.held_out is None and p.best_step is None for p in run)


def test_the_status_says_overfitting_once_the_held_out_loss_turns_up():
    session = CopilotSession()
    session.held_curve = [(0, 2.0), (10, 1.5), (20, 1.52)]
    done = Progress(20, 100, 1.0, 1e-4, 1.0, 1.52, 10, 1.5)
    note = Copilot._held_out_note(session, done)
    assert note.startswith("<b>Overfitting:</b>") and f"{1.5 / math.log(2):.3f} (step 10)" in note
    session.held_curve[-1] = (20, 1.505)  # within the 0.01-nat margin: noise, not a trend
    assert Copilot._held_out_note(session, done) == f"Held-out loss: best {1.5 / math.log(2):.3f} bits/char at step 10."
