"""``semsearch``: one command with subcommands, each group in its own module (``cli_index``,
``cli_serve``, ``cli_train``, ``cli_eval``). App modules are imported lazily, per subcommand, so
``semsearch --help`` is instant and a subcommand pays only for what it uses."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from core.errors import DataError, InvalidInputError, SemsearchError
from semsearch import cli_eval, cli_index, cli_serve, cli_train

EXIT_DATA = 2
EXIT_ERROR = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="semsearch", description="Sentence-embedding semantic search")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    index = sub.add_parser("index", help="build and manage index folders")
    index_sub = index.add_subparsers(dest="index_command", required=True)
    cli_index.add_commands(index_sub)
    cli_serve.add_commands(sub)
    cli_train.add_commands(sub)
    cli_eval.add_commands(sub)
    return parser


def _threads() -> None:
    """torch intra-op threads: SEMSEARCH_THREADS, else the CPUs this process may use (its affinity
    and cgroup quota; torch's own default counts the host's cores and oversubscribes a container)."""
    from core.device import available_cpus, configure_threads

    raw = os.environ.get("SEMSEARCH_THREADS", "").strip() or "0"
    if not raw.isdigit():
        raise InvalidInputError(f"SEMSEARCH_THREADS must be a whole number, got {raw!r}")
    n = configure_threads(int(raw))
    logging.getLogger("semsearch").debug("torch threads %d (available CPUs %d)", n, available_cpus())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        _threads()
        return int(args.func(args))
    except DataError as exc:
        print(f"semsearch: error: {exc.message}", file=sys.stderr)
        return EXIT_DATA
    except SemsearchError as exc:
        print(f"semsearch: error: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from core.durable import as_disk_full

        target = getattr(args, "index", None) or getattr(args, "output", None)
        folder = Path(target).expanduser().parent if isinstance(target, str | Path) else None
        full = as_disk_full(exc, "the write", folder)
        if full is None:
            raise
        print(f"semsearch: error: {full.message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
