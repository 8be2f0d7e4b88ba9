"""The image's HEALTHCHECK: exit 0 when ``GET /health`` answers 200 on this container's port.

Standard library only (the slim image has no curl). The port is ``SEMSEARCH_PORT`` (8000).
"""

from __future__ import annotations

import os
import sys
import urllib.request


def main() -> int:
    port = os.environ.get("SEMSEARCH_PORT", "8000")
    url = f"http://127.0.0.1:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
