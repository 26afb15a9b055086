"""Which files are a built-in (real pretrained) model, and an audit hook that notes when a process opens one.

The test suite's `slow` mark must sit on every test that loads a built-in model (tests/conftest.py checks it): a
load opens the GGUF shipped in a package, or the converted folder in `$NEUROBOARD_CACHE/models/` named after it
(config.json there is opened from Python even when the weights are memory-mapped by Rust). Subprocesses started by
a test (the CLI, `neuroboard serve`) report through a log file named by `NEUROBOARD_TEST_MODEL_LOG`, which
`guard/sitecustomize.py` watches.
"""

import os
import re
import sys

REAL = re.compile(r"(smollm2-135m|gemma-3-270m|gemma3-270m)[^/]*(\.gguf$|/)", re.IGNORECASE)
LOG_ENV = "NEUROBOARD_TEST_MODEL_LOG"
opened: list[str] = []  # real-model files this process opened since the last `reset()`


def is_real_model_file(path) -> bool:
    try:
        text = os.fsdecode(path)
    except TypeError:  # a file descriptor
        return False
    return bool(REAL.search(text))


def _watch(event, args):
    if event == "open" and args and is_real_model_file(args[0]):
        opened.append(os.fsdecode(args[0]))
        log = os.environ.get(LOG_ENV)
        if log:
            with open(log, "a") as f:  # noqa: PTH123 - an audit hook; the log's own name never matches
                f.write(os.fsdecode(args[0]) + "\n")


_installed = False


def install() -> None:
    """Add the audit hook once per process (audit hooks cannot be removed; the hook itself is a cheap regex)."""
    global _installed
    if not _installed:
        sys.addaudithook(_watch)
        _installed = True
