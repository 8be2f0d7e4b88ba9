"""Settings whose name changed keep reading their old environment name."""

from __future__ import annotations

import pytest

from service.settings import Settings


def test_max_batch_tokens_reads_its_new_and_its_old_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().max_batch_tokens == 512
    assert Settings(max_batch_tokens=1024).max_batch_tokens == 1024  # how the CLI passes flags
    monkeypatch.setenv("SEMSEARCH_ENCODE_MAX_TOKENS", "256")  # its name before it matched the flag
    assert Settings().max_batch_tokens == 256
    monkeypatch.setenv("SEMSEARCH_MAX_BATCH_TOKENS", "2048")
    assert Settings().max_batch_tokens == 2048  # the new name wins over the old
    monkeypatch.setenv("MAX_BATCH_TOKENS", "9")  # never read without the prefix
    monkeypatch.delenv("SEMSEARCH_MAX_BATCH_TOKENS")
    monkeypatch.delenv("SEMSEARCH_ENCODE_MAX_TOKENS")
    assert Settings().max_batch_tokens == 512
