"""Child process of the benchmark: runs one group in a fresh interpreter.

Usage: python bench/child.py GROUP [--quick] [--profile]. Prints the group's rows as one JSON
list on stdout, then exits at once, without stopping what the group left running (stopping
100 k channels one by one is slow and not what is measured).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys

from common import Settings
from wes_rows import CHILD_GROUPS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("group", choices=sorted(CHILD_GROUPS))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    settings = Settings.make(args.quick, args.profile)
    rows = asyncio.run(CHILD_GROUPS[args.group](settings, lambda _name: True))
    print(json.dumps([dataclasses.asdict(row) for row in rows]), flush=True)
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
