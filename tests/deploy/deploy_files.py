"""Reading the deployment files: the Dockerfile, .dockerignore and docker-compose.yml, read as
Docker and Compose read them (no Docker engine runs here, so nothing is built or started).

- :func:`parse_dockerfile`: instructions grouped by build stage, line continuations joined.
- :func:`interpolate`: Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``$$``.
- :func:`excluded`: the build context through .dockerignore's rules
  (patterns anchored at the root, ``**`` for any depth, ``!`` re-includes, the last match wins).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE_FILE = REPO / "docker-compose.yml"
COMPOSE_SCHEMA = Path(__file__).with_name("compose-spec.json")


# ----------------------------------------------------------------------------------- Dockerfile
@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, ENV, ...
    args: str  # the rest of the instruction, continuations joined
    line: int


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def values(self, keyword: str) -> dict[str, str]:
        """The stage's ``ENV`` or ``ARG`` settings (``NAME=value`` form), values unexpanded."""
        values: dict[str, str] = {}
        for ins in self.all(keyword):
            for token in split_words(ins.args):
                key, eq, value = token.partition("=")
                if eq:
                    values[key] = value
        return values


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)


def split_words(text: str) -> list[str]:
    import shlex

    return shlex.split(text, posix=True)


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    buf: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not buf:
            start = number
        if stripped.endswith("\\"):
            buf.append(stripped[:-1].strip())
            continue
        buf.append(stripped)
        yield start, " ".join(part for part in buf if part)
        buf = []
    if buf:
        yield start, " ".join(buf)


def parse_dockerfile(path: Path = DOCKERFILE) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, line in _logical_lines(path.read_text(encoding="utf-8")):
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else f"stage{len(stages)}"
            stages.append(Stage(name=name, base=words[0]))
        elif not stages:
            assert keyword == "ARG", f"Dockerfile:{number}: only ARG may precede the first FROM"
            key, _, value = args.partition("=")
            global_args[key] = value
        else:
            stages[-1].instructions.append(Instruction(keyword, args, number))
    return Dockerfile(global_args, stages)


def exec_form(args: str) -> list[str]:
    """``CMD ["a", "b"]`` -> ["a", "b"] (JSON exec form)."""
    import json

    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


# ------------------------------------------------------------------------------- .dockerignore
def dockerignore_patterns(path: Path = DOCKERIGNORE) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    pattern = pattern.strip("/")
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def excluded(rel_path: str, patterns: list[str]) -> bool:
    """Docker's rule: a path is out when the last pattern matching it, or one of its parent
    folders, excludes it."""
    parts = rel_path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _pattern_regex(pattern[1:] if negate else pattern)
        if any(regex.match(prefix) for prefix in prefixes):
            result = not negate
    return result


# --------------------------------------------------------------------------------------- Compose
_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation over every string of a loaded file."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(5)
        op, arg = m.group(3), m.group(4) or ""
        current = env.get(name)
        if op in (":-", "-"):
            unset = current is None or (op == ":-" and current == "")
            return arg if unset else str(current)
        if op in (":?", "?"):
            if current is None or (op == ":?" and current == ""):
                raise KeyError(f"required variable {name}: {arg}")
            return current
        if op in (":+", "+"):
            set_ = current is not None and (op == "+" or current != "")
            return arg if set_ else ""
        return current or ""

    return _VAR.sub(one, value)


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    """A service's ``environment`` (map or list form) as strings, as the container sees them."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = [item.partition("=") for item in env]
        return {k: v for k, _, v in pairs}
    return {
        k: ("" if v is None else str(v).lower() if isinstance(v, bool) else str(v)) for k, v in env.items()
    }
