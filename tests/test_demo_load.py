"""A small classroom on the launched Copilot demo (benchmarks/demo_load.py, shortened): 8 sessions
generating while 2 fine-tune, all through gradio_client on 127.0.0.1. No request fails, every
session's model is its own, and the server still answers afterwards."""

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="gradio not installed")
pytest.importorskip("gradio_client", reason="gradio_client not installed")

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = ROOT / "checkpoints" / "copilot-tiny"
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
              pytest.mark.skipif(not CHECKPOINT.is_dir(), reason="checkpoints/copilot-tiny not shipped here")]


def load_benchmark():
    """benchmarks/ is a folder of scripts, not a package: import the file itself. Importing it
    changes no process settings (those run under __main__ only)."""
    spec = importlib.util.spec_from_file_location("demo_load", ROOT / "benchmarks" / "demo_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_small_classroom_generates_and_finetunes_at_once():
    sessions, finetunes = 8, 2
    out = load_benchmark().run(str(CHECKPOINT), sessions=sessions, finetunes=finetunes, steps=10, new_chars=10,
                               requests=4, min_requests=1, max_seconds=25, log=lambda *a: None)
    assert out["url"].startswith("http://127.0.0.1:")
    assert out["requests_failed"] == 0 and not out["errors"], out["errors"]
    assert out["finetunes_ok"] == finetunes
    # every session made at least its first request, and the fine-tuners one before training
    assert out["requests_ok"] >= sessions + 2 * finetunes
    assert out["peak_rss_mb"] > 0 and len(out["generate_all"]) >= sessions

    checks = out["checks"]
    # Untouched sessions: greedy output and weights equal to the checkpoint loaded afresh from disk
    # (outside the app), so no fine-tune leaked into the shared pretrained model.
    assert checks["untouched_equal_fresh"] == sessions
    assert checks["untouched_weights_equal_fresh"] == sessions
    # Fine-tuned sessions: each its own model object, weights unlike the pretrained ones and unlike
    # each other's (each trained on its own text), and greedy output on a prompt from its own text
    # unlike the fresh load's.
    assert checks["finetuned_own_models"] == finetunes
    assert checks["finetuned_weights_differ_from_fresh"] == finetunes
    assert checks["finetuned_pairs_equal"] == 0
    assert checks["finetuned_differ_from_fresh"] == finetunes
    assert checks["base_shared"] == 1  # one pretrained copy in memory for all sessions
    # and the server still answered a newcomer after the load, with the pretrained model
    assert checks["newcomer_equal_fresh"] is True
