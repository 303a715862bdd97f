"""The classroom server's TINYTORCH_DEMO_* settings: each read in its range, and a mistyped one
stops `python -m demos` with a line naming it, not a traceback (or a server with no fine-tunes)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from demos import settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("raw, expected", [(None, 4), ("", 4), ("  ", 4), ("7", 7), (" 12 ", 12), ("1", 1)])
def test_a_whole_number_in_range_or_the_default(monkeypatch, raw, expected):
    if raw is None:
        monkeypatch.delenv("TINYTORCH_DEMO_X", raising=False)
    else:
        monkeypatch.setenv("TINYTORCH_DEMO_X", raw)
    assert settings.number("TINYTORCH_DEMO_X", 4, 1, 12, whole=True) == expected


@pytest.mark.parametrize("raw", ["abc", "0", "13", "2.5", "-1", "1e400"])
def test_a_value_out_of_range_says_which_variable_and_what_it_takes(monkeypatch, raw):
    monkeypatch.setenv("TINYTORCH_DEMO_X", raw)
    with pytest.raises(settings.SettingError) as caught:
        settings.number("TINYTORCH_DEMO_X", 4, 1, 12, whole=True)
    assert str(caught.value).startswith(f"TINYTORCH_DEMO_X={raw!r}: expected a whole number from 1 to 12. ")
    assert "unset it for the default (4)" in str(caught.value)


@pytest.mark.parametrize("raw, expected", [("0.5", 0.5), ("1024", 1024.0), ("3e3", 3000.0)])
def test_a_number_with_no_maximum(monkeypatch, raw, expected):
    monkeypatch.setenv("TINYTORCH_DEMO_Y", raw)
    assert settings.number("TINYTORCH_DEMO_Y", 1024, 0.5) == expected


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "0.25"])
def test_a_number_is_finite_and_at_least_its_minimum(monkeypatch, raw):
    monkeypatch.setenv("TINYTORCH_DEMO_Y", raw)
    with pytest.raises(settings.SettingError, match=r"expected a number of at least 0\.5\. "):
        settings.number("TINYTORCH_DEMO_Y", 1024, 0.5)


def test_per_core_is_the_cores_when_unset_or_zero(monkeypatch):
    monkeypatch.setenv("TINYTORCH_DEMO_Z", "0")
    assert settings.per_core("TINYTORCH_DEMO_Z") == (os.cpu_count() or 1)
    monkeypatch.setenv("TINYTORCH_DEMO_Z", "3")
    assert settings.per_core("TINYTORCH_DEMO_Z") == 3
    monkeypatch.setenv("TINYTORCH_DEMO_Z", "-3")  # once served, with a concurrency limit of -3
    with pytest.raises(settings.SettingError, match=r"unset it for the default \(one per core\)"):
        settings.per_core("TINYTORCH_DEMO_Z")


def test_the_server_stops_on_a_mistyped_setting_with_one_line(tmp_path):
    """Before: `TINYTORCH_DEMO_FINETUNES=two` was a ValueError traceback from int()."""
    env = {**os.environ, "TINYTORCH_DEMO_FINETUNES": "two", "GRADIO_ANALYTICS_ENABLED": "False"}
    done = subprocess.run([sys.executable, "-m", "demos", "--port", "9"], cwd=tmp_path, env=env, timeout=120,
                          capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == ("TINYTORCH_DEMO_FINETUNES='two': expected a whole number from 0 to 1,024. Set it "
                                   "in range, or unset it for the default (one per core); docs/classroom.md says "
                                   "what each setting does.")
