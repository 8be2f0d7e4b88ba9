"""core.defaults: the packaged encoder's folder, and which model folder serves an index."""

from __future__ import annotations

from pathlib import Path

from core.defaults import default_model_dir, model_for_index


def test_the_packaged_encoder_is_found_offline() -> None:
    assert (default_model_dir() / "modules.json").exists()


def test_model_for_index_explicit_then_recorded_then_default(tmp_path: Path) -> None:
    recorded = tmp_path / "built-with"
    recorded.mkdir()
    asked = tmp_path / "asked"  # taken as given, even before it exists: the load says why not
    assert model_for_index(asked, str(recorded)) == asked
    assert model_for_index(str(asked), None) == asked
    assert model_for_index(None, str(recorded)) == recorded
    assert model_for_index("", str(recorded)) == recorded, "an empty --model is no model"
    # The recorded folder is gone (the index was copied to another machine): the default.
    assert model_for_index(None, str(tmp_path / "moved")) == default_model_dir()
    assert model_for_index(None, None) == default_model_dir()
