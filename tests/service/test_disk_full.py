"""A full disk, for real: the index on a small tmpfs the test mounts, filled up. The write answers
507 (HTTP) or exits non-zero (CLI) with a clear message; nothing acknowledged is lost and nothing
of the refused write is visible; once space is free, writes go on."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.index.folder import IndexFolder
from semsearch.cli import main
from tests.service.helpers import assert_error_shape

MakeClient = Callable[..., TestClient]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def index(small_disk: Path, tiny_index: Path) -> Path:
    """A copy of the tiny index on the small disk."""
    copy = small_disk / "idx"
    shutil.copytree(tiny_index, copy)
    return copy


def _fill(mnt: Path) -> Path:
    filler = mnt / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 1 << 10, 1):  # big blocks, then to the last byte
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


def _newest(index: Path) -> tuple[int, int]:
    """(generation, documents) of the newest committed write, as a fresh reader opens it."""
    folder = IndexFolder.open(index)
    try:
        return folder.generation, folder.count
    finally:
        folder.close()


def test_a_write_on_a_full_disk_is_507_and_loses_nothing(
    small_disk: Path, index: Path, make_client: MakeClient
) -> None:
    client = make_client(index)
    ok = client.put("/documents", json={"documents": [{"id": "kept", "text": "kept before the disk filled"}]})
    assert ok.status_code == 200, ok.text
    generation = client.get("/ready").json()["generation"]
    filler = _fill(small_disk)

    full = client.put("/documents", json={"documents": [{"id": "lost", "text": "written on a full disk"}]})
    err = assert_error_shape(full, 507, "disk_full")
    assert "disk is full" in err["message"] and str(small_disk) not in err["message"]
    assert_error_shape(client.delete("/documents/kept"), 507)
    # Reads go on; the acknowledged write is there; the refused ones are not.
    assert client.get("/documents/kept").status_code == 200
    assert client.get("/documents/lost").status_code == 404
    assert client.post("/search", json={"query": "kept", "k": 60}).status_code == 200
    assert client.get("/ready").json()["generation"] == generation
    assert _newest(index) == (generation, 51)  # what another process opening the folder sees

    filler.unlink()
    again = client.put("/documents", json={"documents": [{"id": "later", "text": "after space was freed"}]})
    assert again.status_code == 200, again.text
    ids = {
        h["id"] for h in client.post("/search", json={"query": "x", "k": 60, "include": []}).json()["hits"]
    }
    assert {"kept", "later"} <= ids and "lost" not in ids
    assert client.get("/documents/kept").status_code == 200


def test_index_add_on_a_full_disk_exits_non_zero_with_a_clear_message(
    small_disk: Path,
    index: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    corpus = tmp_path / "more.jsonl"
    corpus.write_text('{"id": "new-1", "text": "a new document"}\n')
    before = _newest(index)
    filler = _fill(small_disk)
    code = main(
        ["index", "add", "--index", str(index), "--corpus", str(corpus), "--model", str(tiny_model_dir)]
    )
    assert code != 0
    assert "disk is full" in capsys.readouterr().err
    assert _newest(index) == before
    filler.unlink()
    assert (
        main(["index", "add", "--index", str(index), "--corpus", str(corpus), "--model", str(tiny_model_dir)])
        == 0
    )
    assert _newest(index) == (before[0] + 1, before[1] + 1)


def test_a_compaction_on_a_full_disk_fails_cleanly_and_loses_nothing(
    small_disk: Path,
    index: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    corpus = tmp_path / "more.jsonl"
    corpus.write_text("".join(f'{{"id": "n{i}", "text": "document {i}"}}\n' for i in range(20)))
    model = ["--model", str(tiny_model_dir)]
    assert main(["index", "add", "--index", str(index), "--corpus", str(corpus), *model]) == 0
    before = _newest(index)
    filler = _fill(small_disk)
    assert main(["index", "compact", "--index", str(index)]) != 0
    assert "disk is full" in capsys.readouterr().err
    assert not list(index.glob(".*.tmp"))  # the half-written base went with the failure
    filler.unlink()
    assert _newest(index) == before  # every logged write is still there, served from the log
    assert main(["index", "compact", "--index", str(index)]) == 0
    folder = IndexFolder.open(index)
    try:
        assert (folder.generation, folder.count) == before and not folder.segments.deltas
        assert folder.get("n7") is not None
    finally:
        folder.close()
