#!/usr/bin/env python3
"""Build a semsearch image with podman/buildah or Docker, taking pip's settings from this machine.

    deploy/build-image.py                          the CPU service image, tagged semsearch:latest
    deploy/build-image.py --target trainer         the training image, semsearch:train
    deploy/build-image.py --base localhost/semsearch-base:bookworm   (see deploy/base-image.sh)
    deploy/build-image.py --dry-run                print the build command, build nothing

Behind a proxy that re-signs TLS, or with a private index, pip inside a build fails where pip on
the machine works: the image's CA bundle and pip defaults are not the machine's. This script
hands the machine's own pip settings (`pip config list`, plus PIP_* variables) and CA bundle to
the build as build secrets, mounted for the install step only and never written to a layer.
Local folders those settings name (find-links, file:// indexes) are mounted read-only at the
same paths with podman (`-v`); Docker cannot mount host folders into a build, so there they
are dropped, with a warning. When such a folder holds the CPU wheel of the pinned torch, the
build takes torch from these settings instead of PyTorch's index.

podman builds get `--format docker`: the OCI format has no HEALTHCHECK, and podman drops it.
Standard library only: it runs with any python3, before any venv exists.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

REPO = Path(__file__).resolve().parent.parent
# pip settings that name where packages come from or how to reach them. Others (cache, verbosity)
# are the builder's business, not the image's.
FORWARDED = ("index-url", "extra-index-url", "find-links", "trusted-host", "cert", "timeout", "retries")
# pip's other spellings of the same options (`--default-timeout` is `--timeout`'s alias).
ALIASES = {"default-timeout": "timeout"}
LOCATIONS = ("index-url", "extra-index-url", "find-links")
DEFAULT_TAGS = {
    ("runtime", "cpu"): "semsearch:latest",
    ("trainer", "cpu"): "semsearch:train",
    ("runtime", "cuda"): "semsearch:cuda",  # the tag docker-compose.yml's GPU services use
    ("trainer", "cuda"): "semsearch:train-cuda",
}


def pip_settings() -> dict[str, str]:
    """The machine's effective pip settings for `pip install` (config files, then PIP_* env).

    Values are whitespace-joined: a multi-line config value becomes one line of the secret."""
    # PIP_CONFIG_FILE stays: it names the config file to read. The other PIP_* are read below.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k == "PIP_CONFIG_FILE"}
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False, env=env
    )
    if proc.returncode != 0:
        print(
            f"build-image: `pip config list` failed, so no pip settings are handed to the build: "
            f"{proc.stderr.strip()[-300:]}",
            file=sys.stderr,
        )
    found: dict[str, str] = {}
    # Later sections win: global < install, as pip itself applies them to `pip install`.
    for section in ("global", "install"):
        for line in proc.stdout.splitlines():
            key, sep, raw = line.partition("=")
            scope, _, name = key.partition(".")
            name = ALIASES.get(name, name)
            if sep and scope == section and name in FORWARDED:
                try:
                    value = str(ast.literal_eval(raw))
                except (ValueError, SyntaxError):
                    value = raw.strip("'\"")
                found[name] = " ".join(value.split())
    for name in (*FORWARDED, *ALIASES):
        value = os.environ.get("PIP_" + name.upper().replace("-", "_"))
        if value:
            found[ALIASES.get(name, name)] = " ".join(value.split())
    return found


def masked(text: str) -> str:
    """`scheme://user:token@host` with the credentials hidden, for printing."""
    return re.sub(r"(\w+://)[^/@\s]+@", r"\1***@", text)


def local_path(location: str) -> Path | None:
    """The folder a find-links or index entry names on this machine, or None for a remote URL."""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme in ("", None) and location.startswith("/"):
        return Path(location)
    return None


def torch_pin() -> str:
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'"torch==([0-9][^"]*)"', text)
    if match is None:
        raise SystemExit("build-image: pyproject.toml pins no torch==VERSION")
    return match.group(1)


def plan(args: argparse.Namespace, secrets_dir: Path) -> list[str]:
    tool = args.tool
    settings = {} if args.no_pip_settings else pip_settings()
    cmd = [tool, "build"] if tool == "podman" else [tool, "buildx", "build", "--load"]
    # (setting, entry, the folder to mount for it or None for a remote URL)
    entries: list[tuple[str, str, Path | None]] = []
    for name in LOCATIONS:
        for entry in settings.get(name, "").split():
            path = local_path(entry)
            if path is None:
                entries.append((name, entry, None))
            elif not path.exists():
                print(f"build-image: pip's {name} {entry} does not exist here; left out", file=sys.stderr)
            elif tool == "podman":
                # A file:// index's pages link to files beside it (../../files/...): mount the
                # tree the index sits in, not just its `simple` folder.
                mount = path.parent if name != "find-links" and path.name == "simple" else path
                entries.append((name, entry, mount))
            else:
                print(
                    f"build-image: {tool} cannot mount the local {name} {path} into a build; left out",
                    file=sys.stderr,
                )
    wheel = f"torch-{torch_pin()}+cpu-*.whl"
    cpu_torch = {m for _, _, m in entries if m is not None and m.is_dir() and next(m.rglob(wheel), None)}
    torch_local = bool(cpu_torch)
    if cpu_torch and args.variant != "cpu":
        # pip ranks 2.13.0+cpu above PyPI's 2.13.0 (a local version label sorts higher), so a
        # folder holding the CPU wheel would quietly put CPU torch in the CUDA image.
        for path in sorted(cpu_torch):
            print(f"build-image: {path} holds torch's CPU build; left out of this build", file=sys.stderr)
        entries = [e for e in entries if e[2] not in cpu_torch]
    mounts = [m for _, _, m in entries if m is not None]
    kept = {name: [e for n, e, _ in entries if n == name] for name in LOCATIONS}
    conf_lines = ["[global]"]
    for name in FORWARDED:
        if name in LOCATIONS:
            if kept.get(name):
                conf_lines.append(f"{name} = {' '.join(kept[name])}")
        elif name != "cert" and name in settings:
            conf_lines.append(f"{name} = {settings[name]}")
    if len(conf_lines) > 1:
        conf = secrets_dir / "pip.conf"
        conf.write_text("\n".join(conf_lines) + "\n", encoding="utf-8")
        cmd += ["--secret", f"id=pip_conf,src={conf}"]
    ca = settings.get("cert")
    if not args.no_pip_settings:
        ca = ca or os.environ.get("SSL_CERT_FILE") or os.environ.get("REQUESTS_CA_BUNDLE")
    if ca and Path(ca).is_file():
        cmd += ["--secret", f"id=ca_bundle,src={Path(ca).resolve()}"]
    for path in dict.fromkeys(mounts):
        cmd += ["-v", f"{path}:{path}:ro"]
    if tool == "podman":
        cmd += ["--format", "docker"]
    variant_torch = "config" if (torch_local and args.variant == "cpu") else ""
    build_args = {"VARIANT": args.variant}
    if variant_torch:
        build_args["TORCH_INDEX_URL"] = variant_torch
    if args.base:
        build_args["PYTHON_IMAGE"] = args.base
    if args.model_dir:
        build_args["MODEL_DIR"] = args.model_dir
    if args.extras:
        build_args["EXTRAS"] = args.extras
    for key, value in build_args.items():
        cmd += ["--build-arg", f"{key}={value}"]
    tag = args.tag or DEFAULT_TAGS.get((args.target, args.variant), f"semsearch:{args.target}-{args.variant}")
    cmd += ["--target", args.target, "-t", tag, "-f", str(REPO / "Dockerfile"), *args.extra, str(REPO)]
    return cmd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tool", choices=("podman", "docker"), help="default: podman if installed, else docker"
    )
    parser.add_argument("--target", choices=("runtime", "trainer"), default="runtime")
    parser.add_argument("--variant", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--tag", help="default semsearch:latest (runtime) or semsearch:train (trainer)")
    parser.add_argument(
        "--base", help="the PYTHON_IMAGE build argument, e.g. localhost/semsearch-base:bookworm"
    )
    parser.add_argument("--model-dir", help="a model folder inside the checkout (MODEL_DIR)")
    parser.add_argument("--extras", help="install extras on top of serving + indexing (EXTRAS)")
    parser.add_argument(
        "--no-pip-settings",
        action="store_true",
        help="do not hand this machine's pip settings or CA bundle to the build",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the build command and exit")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="-- then more arguments for the build tool")
    args = parser.parse_args(argv)
    args.extra = [a for a in args.extra if a != "--"]
    if args.tool is None:
        args.tool = "podman" if shutil.which("podman") else "docker"
    with tempfile.TemporaryDirectory(prefix="semsearch-build-") as tmp:
        cmd = plan(args, Path(tmp))
        print("build-image:", " ".join(cmd), file=sys.stderr)
        if args.dry_run:
            for secret in sorted(Path(tmp).iterdir()):
                text = masked(secret.read_text(encoding="utf-8"))
                print(f"build-image: {secret.name}:\n{text}", file=sys.stderr)
            return 0
        start = time.monotonic()
        rc = subprocess.run(cmd, check=False).returncode
        print(
            f"build-image: {'built' if rc == 0 else 'FAILED'} in {time.monotonic() - start:.0f} s",
            file=sys.stderr,
        )
        return rc


if __name__ == "__main__":
    sys.exit(main())
