"""Benchmarks for freedompay-async: ``python -m benchmarks --help`` (see benchmarks/README.md).

Speed is measured here, never asserted in tests.
"""

import os as _os
import sys as _sys

# A worker asked to measure another tree's SDK (``--compare-sdk LABEL=PATH``) must import that
# tree's ``freedompay_async`` before anything here imports ours.
_sdk_path = _os.environ.get("FREEDOMPAY_BENCH_SDK_PATH")
if _sdk_path and _sdk_path not in _sys.path:
    _sys.path.insert(0, _sdk_path)
