"""The bundled demo corpus, made on the spot from the running Python's own documentation.

Sources, all present in every CPython installation:
- ``pydoc_data.topics``: the language reference sections that ``help()`` shows;
- the docstrings of ``builtins``;
- module, class and function docstrings of the pure-Python standard library, read with
  ``ast`` from the source files (never imported: importing e.g. ``antigravity`` has effects).

Long texts are split into passages of about ``MAX_WORDS`` words on paragraph boundaries.
Ids are stable for a given Python version.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import json
import re
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAX_WORDS = 120
MIN_CHARS = 60
_SKIP_PARTS = {
    "test",
    "tests",
    "idlelib",
    "tkinter",
    "turtledemo",
    "lib2to3",
    "ensurepip",
    "pydoc_data",
    "site-packages",
    "dist-packages",
    "__pycache__",
    "config-3.11-x86_64-linux-gnu",
    "venv",
    "__phello__",
    "antigravity",
    "this",
}


def split_passages(text: str, max_words: int = MAX_WORDS) -> list[str]:
    """Group paragraphs into passages of at most ``max_words`` words (a longer paragraph is cut)."""
    paragraphs = [re.sub(r"[ \t]+", " ", p).strip() for p in re.split(r"\n\s*\n", text)]
    passages: list[str] = []
    current: list[str] = []
    words = 0
    for para in filter(None, paragraphs):
        n = len(para.split())
        if current and words + n > max_words:
            passages.append("\n\n".join(current))
            current, words = [], 0
        while n > max_words:
            tokens = para.split()
            passages.append(" ".join(tokens[:max_words]))
            para = " ".join(tokens[max_words:])
            n = len(tokens) - max_words
        current.append(para)
        words += n
    if current:
        passages.append("\n\n".join(current))
    return passages


def _docs(base_id: str, title: str, text: str, metadata: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for i, passage in enumerate(split_passages(text)):
        if len(passage) < MIN_CHARS:
            continue
        yield {"id": f"{base_id}#{i}", "text": f"{title}: {passage}", "metadata": metadata}


def _topics() -> Iterator[dict[str, Any]]:
    from pydoc_data.topics import topics

    for key in sorted(topics):
        yield from _docs(f"topic:{key}", key, topics[key], {"source": "language-reference", "topic": key})


def _builtins() -> Iterator[dict[str, Any]]:
    for name in sorted(dir(builtins)):
        if name.startswith("_"):
            continue
        obj = getattr(builtins, name)
        doc = inspect.getdoc(obj)
        if not doc or (inspect.isclass(obj) and issubclass(obj, BaseException) and len(doc) < MIN_CHARS):
            continue
        yield from _docs(
            f"builtins.{name}", f"builtins.{name}", doc, {"source": "builtins", "module": "builtins"}
        )


def _module_name(path: Path, stdlib: Path) -> str | None:
    rel = path.relative_to(stdlib).with_suffix("")
    parts = list(rel.parts)
    if any(p in _SKIP_PARTS or (p.startswith("_") and p != "__init__") for p in parts):
        return None
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) if parts else None


def _stdlib_sources(stdlib: Path) -> Iterator[tuple[str, Path]]:
    # Top-level modules and packages, plus one level of submodules (e.g. os.path is posixpath,
    # json.decoder, concurrent.futures): deeper trees are mostly internals.
    for path in (
        sorted(stdlib.glob("*.py")) + sorted(stdlib.glob("*/*.py")) + sorted(stdlib.glob("*/*/__init__.py"))
    ):
        name = _module_name(path, stdlib)
        if name:
            yield name, path


def _stdlib() -> Iterator[dict[str, Any]]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for module, path in _stdlib_sources(stdlib):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        meta = {"source": "stdlib", "module": module}
        doc = ast.get_docstring(tree)
        if doc:
            yield from _docs(f"{module}", module, doc, meta)
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            if node.name.startswith("_"):
                continue
            doc = ast.get_docstring(node)
            if doc:
                yield from _docs(f"{module}.{node.name}", f"{module}.{node.name}", doc, meta)


def iter_demo_documents() -> Iterator[dict[str, Any]]:
    seen: set[str] = set()
    for doc in (*_topics(), *_builtins(), *_stdlib()):
        if doc["id"] not in seen:  # e.g. a module reached both as pkg/__init__ and directly
            seen.add(doc["id"])
            yield doc


def write_demo_corpus(path: Path) -> int:
    """Write the corpus as JSONL; returns the number of documents."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for doc in iter_demo_documents():
            fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n
