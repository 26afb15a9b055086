"""Imported at start-up by the Python processes a test starts (tests/conftest.py puts this folder on PYTHONPATH):
notes every built-in model file the process opens in $NEUROBOARD_TEST_MODEL_LOG."""

import os
import sys

if os.environ.get("NEUROBOARD_TEST_MODEL_LOG"):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        import realmodels

        realmodels.install()
    finally:
        sys.path.pop(0)
