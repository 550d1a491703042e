#!/usr/bin/env python3
"""Removes what the shared build cache no longer needs: every test and binary
executable in target/debug/deps but the newest of its name (each build of a
changed crate leaves a new one, named by its hash), once it is a day old, so
that a build or test run of another clone going on meanwhile keeps what it
just built. Incremental data is left alone (cargo may be using it).

    scripts/prune-build-cache.py [TARGET_DIR]   (default: $CARGO_TARGET_DIR)

The cache is shared by every clone on the machine; without this it grows by
gigabytes a run until the disk is full.
"""

import os
import re
import sys
import time
from collections import defaultdict

# Executables younger than this are kept (another clone may be about to run them).
MIN_AGE_SECONDS = 24 * 3600


def main() -> None:
    target = sys.argv[1] if len(sys.argv) > 1 else os.environ["CARGO_TARGET_DIR"]
    deps = os.path.join(target, "debug", "deps")
    now = time.time()
    by_name = defaultdict(list)
    for name in os.listdir(deps) if os.path.isdir(deps) else []:
        match = re.fullmatch(r"(.+)-[0-9a-f]{16}", name)
        path = os.path.join(deps, name)
        if match and os.path.isfile(path) and os.access(path, os.X_OK):
            by_name[match.group(1)].append((os.path.getmtime(path), path))
    freed = 0
    for versions in by_name.values():
        versions.sort()
        for modified, path in versions[:-1]:
            if now - modified > MIN_AGE_SECONDS:
                freed += os.path.getsize(path)
                os.remove(path)
    print(f"build cache: {freed / 1e9:.1f} GB of old executables removed")


if __name__ == "__main__":
    main()
