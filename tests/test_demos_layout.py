"""How the demos are put together: one definition of each shared thing, the Level 1 task format
in one module that the demo and the training script both import, the Copilot page built panel by
panel with the same API, and measurements kept out of the demos' comments."""

import ast
import io
import math
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

from demos import common, copilot_ui, curves
from demos import copilot as C
from demos.level1 import FROM_SCRATCH, Level1
from tasks import level1 as tasks
from tinytorch.checkpoint import read_config
from tinytorch.shipped import SHIPPED_DIR

from test_demos import folders  # noqa: F401  (fixture)
from test_demos_app import client, served  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parent.parent
DEMOS = sorted((ROOT / "demos").glob("*.py"))


def definitions(name: str) -> list[str]:
    """The demos' files that define `name` at module level (a function, class or assignment)."""
    found = []
    for path in DEMOS:
        for node in ast.parse(path.read_text()).body:
            names = [node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else \
                [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
            if name in names:
                found.append(path.name)
    return found


# ===================================================================== one of each
def test_curve_frame_parameter_count_and_shipped_are_defined_once():
    assert definitions("curve_frame") == ["curves.py"]
    assert definitions("parameter_count") == []  # Module.num_parameters serves
    assert definitions("SHIPPED") == ["copilot.py"]


def test_the_copilots_offered_come_from_the_checkpoints_shipped_list():
    assert C.SHIPPED == ("copilot", "copilot-large", "copilot-tiny")  # tinytorch.shipped.SHIPPED_NAMES, level1 left out
    assert C.offered() == ["copilot", "copilot-large", "copilot-tiny"]  # all are shipped in checkpoints/
    assert C.offered("me/mine") == ["me/mine", "copilot", "copilot-large", "copilot-tiny"]
    assert C.offered("copilot-tiny") == ["copilot-tiny", "copilot", "copilot-large"]


def test_the_card_counts_the_parameters_of_the_shipped_copilot():
    app = C.Copilot(["copilot"])
    session = app.session(None)
    assert session.base.model.num_parameters() == 469_248  # the shipped copilot's count (README)
    assert "469,248" in app.card(session) or "0.47M" in app.card(session)


def test_level1_curve_is_its_losses_in_bits_per_character_as_one_series(folders):  # noqa: F811
    level1 = Level1(folders["level1"])
    *_, (_, frame, _, _, session) = level1.train(level1.default_table(), FROM_SCRATCH, 5, 1e-2, 0)
    assert list(frame["series"].unique()) == ["loss"]
    assert list(frame["step"]) == [1, 2, 3, 4, 5]
    assert list(frame["loss"]) == [loss / math.log(2) for _, loss in session.curve]  # the Copilot's unit too


def test_curve_frame_converts_and_averages():
    curve = [(1, 2 * math.log(2)), (2, math.log(2))]
    plain = curves.curve_frame(curve)
    assert list(plain["loss"]) == [2 * math.log(2), math.log(2)] and set(plain["series"]) == {"loss"}
    averaged = curves.curve_frame(curve, C.bits, average=True)
    # bias-corrected running average, by hand: (0.2 * 2) / 0.2 = 2, then (0.16 * 2 + 0.2 * 1) / 0.36
    assert list(averaged["loss"]) == pytest.approx([2.0, 1.0, 2.0, 0.52 / 0.36])
    # axes alone: steps 0 and 100 with no loss to draw, in every series of the plot (the first frame's fix them)
    plain, copilot = curves.curve_frame([]), curves.curve_frame(None, average=True)
    assert list(plain["step"]) == [0, 100] and plain["loss"].isna().all() and list(plain["series"]) == ["loss"] * 2
    assert list(copilot["step"]) == [0, 100] * 4 and copilot["loss"].isna().all()
    assert list(copilot["series"]) == [curves.BATCH, curves.BATCH, curves.AVERAGE, curves.AVERAGE,
                                       curves.HELD_OUT, curves.HELD_OUT, curves.KEPT, curves.KEPT]


# ===================================================================== the Level 1 task format
def test_the_level1_demo_does_not_import_the_training_script():
    code = "import sys, demos.level1; print(sorted(m for m in sys.modules if m.split('.')[0] == 'pretrain'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_level1_shape_is_one_for_the_preset_the_demo_and_the_checkpoint(folders):  # noqa: F811
    from pretrain.config import PRESETS

    shape = {k: getattr(PRESETS["level1"], k) for k in tasks.SHAPE}
    assert shape == tasks.SHAPE == dict(n_positions=8, n_embd=16, n_layer=1, n_head=2)
    shipped = read_config(SHIPPED_DIR / "level1")
    assert {k: shipped[k] for k in tasks.SHAPE} == tasks.SHAPE
    missing = Level1(str(Path(folders["level1"]).parent / "no-such-level1"))
    model, _ = missing.fresh_model(FROM_SCRATCH)  # no checkpoint: the task's own shape
    assert {k: getattr(model.config, k) for k in tasks.SHAPE} == tasks.SHAPE
    assert model.config.vocab_size == len(tasks.ALPHABET) + 1 + 2  # A-Z0-9, '>', padding and unknown


def test_the_task_format_parses_what_it_writes():
    text = tasks.format_tasks(tasks.DEFAULT_TASKS)
    assert text.splitlines()[0] == "FGHI>GHIJ" and tasks.parse_tasks(text) == tasks.DEFAULT_TASKS
    with pytest.raises(ValueError, match="line 2: 'AB>CD' is not a pair like FGHI>GHIJ"):
        tasks.parse_tasks("FGHI>GHIJ\nAB>CD\n")


# ===================================================================== the Copilot page
def test_build_is_short_and_each_panel_is_its_own_function():
    functions = {node.name: node for node in ast.parse(Path(copilot_ui.__file__).read_text()).body
                 if isinstance(node, ast.FunctionDef)}
    panels = ["choose_panel", "try_panel", "finetune_panel", "compare_panel", "keep_panel", "inside_panel"]
    assert set(panels) <= set(functions)
    for name, node in functions.items():
        assert node.end_lineno - node.lineno + 1 <= 45, name


# The API before the page was split by panel (gradio_client's view_api): names and parameters.
API = {
    "/load": ["source"], "/generate": ["prompt", "max_new_tokens", "temperature", "top_k", "top_p", "seed", "mode"],
    "/finetune": ["text", "steps", "lr", "batch_size", "held_out", "keep_best"], "/stop": [],
    "/compare": ["prompts", "max_new_tokens", "temperature", "top_k", "top_p", "seed", "mode"],
    "/reset": [], "/download": [], "/attention": ["prompt", "layer", "head"],
    "/train": ["table", "start", "steps", "lr", "seed"], "/evaluate": ["table"], "/level1_stop": [],
}


def test_the_api_lists_the_same_endpoints_with_the_same_parameters(client):  # noqa: F811
    named = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {name: [p["parameter_name"] for p in e["parameters"]] for name, e in named.items()} == API


# ===================================================================== comments
MEASURED = re.compile(r"\b\d+(\.\d+)? ?(s|ms|%)(?![\w])")


def test_the_demos_comments_and_docstrings_quote_no_measurements():
    """Figures live in benchmarks/README.md beside their commands; the code says why."""
    found = []
    for path in DEMOS:
        source = path.read_text()
        texts = [t.string for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type == tokenize.COMMENT]
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and ast.get_docstring(node):
                texts.append(ast.get_docstring(node))
        found += [f"{path.name}: {m.group(0)}" for text in texts for m in MEASURED.finditer(text)]
    assert found == []
    assert "python benchmarks/demo_finetune.py" in (ROOT / "benchmarks" / "README.md").read_text()
