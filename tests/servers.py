"""The old home of the test servers, kept for `bench/backend_rows.py`, which imports `servers`
from this folder by its bare name; they live in `tests/support/servers.py`. Delete this module
once the benchmarks import `tests.support.servers`."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1]))  # the repository, holding `tests`

from tests.support import servers  # importable once the line above ran

sys.modules[__name__] = servers  # one module under both names, not a copy
