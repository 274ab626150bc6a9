"""Run by every Python process started with tests/faults.py's `fault_env` (PYTHONPATH): adds
the fault hook to the fit loop when the environment names a fault."""

import os
import sys

if os.environ.get("LAB3_KILL_AFTER_EPOCH") or os.environ.get("LAB3_RAISE_AFTER_EPOCH"):
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.append(tests)
    import faults

    sys.path.remove(tests)
    faults.install()
