"""The encoder: folder formats, batching invariance, truncation, and the real MiniLM."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.encoder import Encoder
from core.errors import InvalidInputError, ModelFormatError, ModelNotFoundError
from core.model_folder import read_spec

VARIED_TEXTS = [
    "cat",
    "the red cat sees the dog .",
    "a man is playing a guitar in the park",
    "the stock market fell today",
    "rain",
    "the old chef makes fresh bread and soup in the kitchen every morning , and people like it",
    "python code has a bug",
    "the comet and the moon orbit the sun",
    "someone plays an instrument",
    "the big blue ship",
    "four five",
]
LONG_TEXT = " ".join(["the cat sees the dog and the bird"] * 6)  # ~48 word tokens


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ------------------------------------------------------------------ tiny model


def test_tiny_model_saved_in_st_layout(tiny_model_dir: Path, tiny_encoder: Encoder) -> None:
    modules = json.loads((tiny_model_dir / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    assert tiny_encoder.dim == 32
    assert tiny_encoder.max_seq_length == 16
    assert tiny_encoder.normalize is True
    assert tiny_encoder.fingerprint and len(tiny_encoder.fingerprint) == 64


def test_tiny_tokenizer_knows_the_test_words(tiny_encoder: Encoder) -> None:
    enc = tiny_encoder.tokenize(["the red cat sees the dog ."])[0]
    assert "[UNK]" not in enc.tokens
    assert enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]"


def test_encode_shape_dtype_and_unit_norm(tiny_encoder: Encoder) -> None:
    vecs = tiny_encoder.encode(VARIED_TEXTS)
    assert vecs.shape == (len(VARIED_TEXTS), 32)
    assert vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    # Different texts give different vectors (the model is not degenerate).
    assert not np.allclose(vecs[0], vecs[1], atol=1e-3)


@pytest.fixture(scope="module")
def one_by_one(tiny_encoder: Encoder) -> np.ndarray:
    """Each text encoded alone: no padding at all."""
    return np.stack([tiny_encoder.encode([t], batch_size=1)[0] for t in VARIED_TEXTS])


@pytest.mark.parametrize("batch_size", [1, 2, 3, 7, 64])
def test_encode_independent_of_batch_size(
    tiny_encoder: Encoder, one_by_one: np.ndarray, batch_size: int
) -> None:
    got = tiny_encoder.encode(VARIED_TEXTS, batch_size=batch_size)
    np.testing.assert_allclose(got, one_by_one, atol=1e-5)


def test_encode_independent_of_input_order(tiny_encoder: Encoder) -> None:
    reference = tiny_encoder.encode(VARIED_TEXTS, batch_size=3)
    rng = np.random.default_rng(7)
    for _ in range(3):
        perm = rng.permutation(len(VARIED_TEXTS))
        got = tiny_encoder.encode([VARIED_TEXTS[i] for i in perm], batch_size=3)
        np.testing.assert_allclose(got, reference[perm], atol=1e-5)


def test_encode_empty_list_and_bad_arguments(tiny_encoder: Encoder) -> None:
    assert tiny_encoder.encode([]).shape == (0, 32)
    with pytest.raises(InvalidInputError):
        tiny_encoder.encode("a single string")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        tiny_encoder.encode(["cat"], batch_size=0)


def test_truncation_is_reported(tiny_encoder: Encoder) -> None:
    out = tiny_encoder.encode_detailed([LONG_TEXT, "the cat", "cat dog"])
    assert out.truncated.tolist() == [True, False, False]
    assert out.token_counts.tolist() == [16, 4, 4]
    # The long text is embedded as its first 16 tokens: same vector as an exact 14-word prefix.
    prefix = " ".join(LONG_TEXT.split()[:14])
    cut = tiny_encoder.encode_detailed([prefix])
    assert cut.truncated.tolist() == [False]
    assert cut.token_counts.tolist() == [16]
    np.testing.assert_allclose(out.embeddings[0], cut.embeddings[0], atol=1e-5)


def test_plain_transformers_folder_loads_with_mean_pooling(tiny_encoder: Encoder, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    tiny_encoder.net[0].auto_model.save_pretrained(str(plain))
    tiny_encoder.tokenizer.save_pretrained(str(plain))
    assert not (plain / "modules.json").exists()

    spec = read_spec(plain)
    assert spec.layout == "transformers"
    enc = Encoder.load(plain, device="cpu")
    assert enc.normalize is False
    assert enc.pooling.modes == ("mean",)
    assert enc.dim == 32

    texts = ["the red cat sees the dog .", "python code", "rain and snow"]
    raw = enc.encode(texts)
    norms = np.linalg.norm(raw, axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-3), "a plain folder must not normalise"
    # Same weights and mean pooling: normalising the plain vectors gives the ST model's vectors.
    np.testing.assert_allclose(raw / norms[:, None], tiny_encoder.encode(texts), atol=1e-5)


# ------------------------------------------------------------------ folder errors


def test_missing_model_folder(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFoundError) as info:
        Encoder.load(missing, device="cpu")
    assert str(missing) in info.value.message


def test_folder_that_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match=r"neither modules\.json nor config\.json"):
        Encoder.load(tmp_path, device="cpu")


def test_pickled_weights_are_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(tiny_model_dir / "config.json", folder / "config.json")
    (folder / "pytorch_model.bin").write_bytes(b"not loaded, never unpickled")
    with pytest.raises(ModelFormatError) as info:
        Encoder.load(folder, device="cpu")
    assert "pickled weights" in info.value.message
    assert "pytorch_model.bin" in info.value.message


def test_unsupported_module_type(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "dense"
    shutil.copytree(tiny_model_dir, folder)
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelFormatError) as info:
        Encoder.load(folder, device="cpu")
    assert "sentence_transformers.models.Dense" in info.value.message


def test_invalid_modules_json(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "modules.json").write_text("[{")
    with pytest.raises(ModelFormatError, match="invalid JSON"):
        Encoder.load(folder, device="cpu")


def test_modules_json_entries_must_be_objects(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A malformed modules.json must give ModelFormatError, not an AttributeError crash."""
    folder = tmp_path / "odd"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "modules.json").write_text('["0_Transformer", "1_Pooling"]')
    with pytest.raises(ModelFormatError):
        Encoder.load(folder, device="cpu")


def test_pooling_dim_must_match_hidden_size(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "wrongdim"
    shutil.copytree(tiny_model_dir, folder)
    cfg_path = folder / "1_Pooling" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["word_embedding_dimension"] = 64
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ModelFormatError, match="does not match hidden size"):
        Encoder.load(folder, device="cpu")


def test_fingerprint_depends_on_weights_and_pooling(tiny_model_dir: Path, tiny_encoder: Encoder, tmp_path):
    folder = tmp_path / "cls"
    shutil.copytree(tiny_model_dir, folder)
    cfg_path = folder / "1_Pooling" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["pooling_mode_mean_tokens"] = False
    cfg["pooling_mode_cls_token"] = True
    cfg_path.write_text(json.dumps(cfg))
    other = Encoder.load(folder, device="cpu")
    assert other.fingerprint != tiny_encoder.fingerprint
    assert Encoder.load(tiny_model_dir, device="cpu").fingerprint == tiny_encoder.fingerprint


# ------------------------------------------------------------------ real MiniLM


@pytest.mark.slow
def test_minilm_golden_similarity(minilm_encoder: Encoder) -> None:
    a, b, c = minilm_encoder.encode(
        ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell today."]
    )
    assert minilm_encoder.dim == 384
    np.testing.assert_allclose(np.linalg.norm([a, b, c], axis=1), 1.0, atol=1e-5)
    related, unrelated = cosine(a, b), cosine(a, c)
    assert related > unrelated
    assert related > 0.4
    assert unrelated < 0.2


@pytest.fixture(scope="module")
def minilm_resaved(minilm_encoder: Encoder, minilm_dir: Path, tmp_path_factory) -> tuple[Path, str, Encoder]:
    """MiniLM loaded, saved to a temp folder, and loaded again."""
    original = Encoder.load(minilm_dir, device="cpu")
    original_fp = original.fingerprint
    out = tmp_path_factory.mktemp("minilm") / "resaved"
    original.save(out)
    assert original_fp is not None
    return out, original_fp, original


@pytest.mark.slow
def test_minilm_st_layout_round_trip(minilm_encoder: Encoder, minilm_resaved) -> None:
    out, _, saved = minilm_resaved
    for name in (
        "modules.json",
        "1_Pooling/config.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
    ):
        assert (out / name).is_file(), name
    assert list(out.glob("*.safetensors"))
    assert json.loads((out / "sentence_bert_config.json").read_text())["max_seq_length"] == 256

    reloaded = Encoder.load(out, device="cpu")
    assert reloaded.dim == 384
    assert reloaded.normalize is True
    assert reloaded.max_seq_length == minilm_encoder.max_seq_length
    texts = ["A man is playing a guitar.", "The stock market fell today.", "short"]
    np.testing.assert_allclose(reloaded.encode(texts), minilm_encoder.encode(texts), atol=1e-6)
    # The fingerprint recorded at save time is the one a reload computes.
    assert reloaded.fingerprint == saved.fingerprint


@pytest.mark.slow
def test_minilm_fingerprint_survives_save_round_trip(minilm_resaved) -> None:
    """Same weights, same pooling, same vectors: an index built with the packaged model must
    be servable with a re-saved copy of it, so the fingerprint must not change."""
    out, original_fp, _ = minilm_resaved
    reloaded = Encoder.load(out, device="cpu")
    assert reloaded.fingerprint == original_fp
