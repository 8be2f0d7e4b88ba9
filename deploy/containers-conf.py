#!/usr/bin/env python3
"""Write a containers.conf that lets podman run containers on hosts like this project's machines.

    deploy/containers-conf.py PATH        then: export CONTAINERS_CONF=PATH

Two defaults of podman fail in sandboxes such as these (cgroup v1 "hybrid" hosts that refuse
raising resource limits):
- podman's default ulimits (nofile 1048576) exceed the host's hard limit, and the runtime may not
  raise a limit, so every `podman run` fails ("error setting rlimit type 7"). The file sets the
  defaults to this process's own hard limits; nproc is capped lower, because the runtime here is
  refused nproc at the hard limit itself.
- crun refuses cgroup v1 hybrid hosts; runc, where installed, is made the runtime.
The test harness (tests/deploy/container_engine.py) and benchmarks/container_image.py use it.
Standard library only.
"""

from __future__ import annotations

import resource
import shutil
import sys
from pathlib import Path


def _limit(which: int, cap: int) -> int:
    hard = resource.getrlimit(which)[1]
    return cap if hard == resource.RLIM_INFINITY else min(hard, cap)


def render() -> str:
    nofile = _limit(resource.RLIMIT_NOFILE, 65536)
    nproc = _limit(resource.RLIMIT_NPROC, 4096)
    if nproc == resource.getrlimit(resource.RLIMIT_NPROC)[1]:
        nproc = max(nproc // 2, 256)
    lines = [
        "# written by deploy/containers-conf.py for this host's limits",
        "[containers]",
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]',
    ]
    if shutil.which("runc"):
        lines += ["[engine]", 'runtime = "runc"']
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    Path(argv[0]).write_text(render(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
