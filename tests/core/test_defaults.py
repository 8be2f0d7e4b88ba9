"""core.defaults: the packaged encoder's folder."""

from __future__ import annotations

from core.defaults import default_model_dir


def test_the_packaged_encoder_is_found_offline() -> None:
    assert (default_model_dir() / "modules.json").exists()
