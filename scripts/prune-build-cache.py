#!/usr/bin/env python3
"""Removes what the shared build cache no longer needs: every test and binary
executable in target/debug/deps but the newest of its name (each build of a
changed crate leaves a new one, named by its hash), and incremental data.

    scripts/prune-build-cache.py [TARGET_DIR]   (default: $CARGO_TARGET_DIR)

The cache is shared by every clone on the machine; without this it grows by
gigabytes a run until the disk is full.
"""

import os
import re
import shutil
import sys
from collections import defaultdict


def main() -> None:
    target = sys.argv[1] if len(sys.argv) > 1 else os.environ["CARGO_TARGET_DIR"]
    debug = os.path.join(target, "debug")
    shutil.rmtree(os.path.join(debug, "incremental"), ignore_errors=True)
    deps = os.path.join(debug, "deps")
    by_name = defaultdict(list)
    for name in os.listdir(deps) if os.path.isdir(deps) else []:
        match = re.fullmatch(r"(.+)-[0-9a-f]{16}", name)
        path = os.path.join(deps, name)
        if match and os.path.isfile(path) and os.access(path, os.X_OK):
            by_name[match.group(1)].append((os.path.getmtime(path), path))
    freed = 0
    for versions in by_name.values():
        versions.sort()
        for _, path in versions[:-1]:
            freed += os.path.getsize(path)
            os.remove(path)
    print(f"build cache: {freed / 1e9:.1f} GB of old executables removed")


if __name__ == "__main__":
    main()
