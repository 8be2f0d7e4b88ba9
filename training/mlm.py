"""``semsearch train mlm``: masked-language-model domain adaptation before siamese fine-tuning.

BERT's recipe: 15% of the (non-special, non-padding) tokens are chosen; of those 80% become
[MASK], 10% a random token, 10% stay. The loss is cross-entropy over the chosen positions only.
The transformer is shared with a ``core`` encoder, so the output is a model folder in the same
layout as the input (pooling kept) that ``train bi-encoder`` and the indexer load unchanged; the
MLM head is saved beside it as ``mlm_head.safetensors`` so a later run can continue.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from core.corpus import read_corpus
from core.device import resolve_device
from core.encoder import Encoder
from core.errors import DataError, InvalidInputError
from training.curves import plot_curves
from training.length_batches import length_batches
from training.loop import METRICS_FILE, RunConfig, run

log = logging.getLogger(__name__)
HEAD_FILE = "mlm_head.safetensors"


@dataclass(kw_only=True)
class MlmConfig(RunConfig):
    corpus: str
    lr: float = 5e-5
    max_seq_length: int = 128
    mask_prob: float = 0.15


def mask_tokens(
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    prob: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (inputs, labels); labels are -100 except at the chosen positions."""
    chosen = (torch.rand(input_ids.shape, generator=generator) < prob) & maskable
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    roll = torch.rand(input_ids.shape, generator=generator)
    inputs = input_ids.clone()
    inputs[chosen & (roll < 0.8)] = mask_id
    random_pos = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[random_pos] = torch.randint(vocab_size, input_ids.shape, generator=generator)[random_pos]
    return inputs, labels


def read_texts(path: str | Path, skip_bad_lines: bool) -> list[str]:
    """Plain text (one passage per line) for ``.txt``; otherwise the corpus formats."""
    p = Path(path)
    if p.suffix.lower() == ".txt":
        if not p.is_file():
            raise DataError(p, None, "corpus file not found")
        return [line.strip() for line in p.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    skipped: list[DataError] = []
    texts = [row.doc.text for row in read_corpus(p, None, skip_bad_lines, skipped)]
    for err in skipped[:20]:
        log.warning("skipped %s", err.message)
    return texts


def masked_lm_for(encoder: Encoder) -> Any:
    """A masked-LM model whose base is the encoder's own transformer (shared parameters)."""
    from transformers import AutoModelForMaskedLM

    base: Any = encoder.net[0].auto_model
    mlm: Any = AutoModelForMaskedLM.from_config(base.config)
    setattr(mlm, mlm.base_model_prefix, base)
    mlm.get_output_embeddings().weight = base.get_input_embeddings().weight  # tie, as BERT does
    head_path = Path(str(encoder.source)) / HEAD_FILE
    if head_path.is_file():
        mlm.load_state_dict(load_file(str(head_path)), strict=False)
        log.info("continued the MLM head from %s", head_path)
    return mlm.to(encoder.device)


class MlmTask:
    key_metric: str | None = None

    def __init__(self, cfg: MlmConfig, encoder: Encoder, texts: list[str], max_len: int) -> None:
        if not 0.0 < cfg.mask_prob < 1.0:
            raise InvalidInputError("mask_prob must be in (0, 1)")
        self.cfg, self.encoder = cfg, encoder
        # Train on shorter windows, but save the model with its own max_seq_length.
        self.model_max_len = encoder.max_seq_length
        encoder.set_max_seq_length(max_len)
        self.mlm = masked_lm_for(encoder)
        self.modules: dict[str, nn.Module] = {"mlm": self.mlm}
        self.encodings = encoder.tokenize(texts)
        self.lengths = np.array([len(e.ids) for e in self.encodings])
        tok = encoder.tokenizer
        self.special = torch.tensor(sorted(set(tok.all_special_ids)))
        self.mask_id = int(tok.mask_token_id)
        self.vocab_size = int(self.mlm.get_output_embeddings().weight.shape[0])
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def num_examples(self) -> int:
        return len(self.encodings)

    def batches(self, epoch: int) -> list[np.ndarray]:
        return length_batches(self.lengths, self.cfg.batch_size, self.cfg.seed + epoch)

    def loss(self, batch: np.ndarray) -> tuple[torch.Tensor, int]:
        feats = self.encoder.collate([self.encodings[i] for i in batch.tolist()])
        ids = feats["input_ids"].cpu()
        maskable = (feats["attention_mask"].cpu() == 1) & ~torch.isin(ids, self.special)
        inputs, labels = mask_tokens(
            ids, maskable, self.mask_id, self.vocab_size, self.cfg.mask_prob, self.generator
        )
        dev = self.encoder.device
        out = self.mlm(
            input_ids=inputs.to(dev),
            attention_mask=feats["attention_mask"],
            token_type_ids=feats["token_type_ids"],
            labels=labels.to(dev),
        )
        return out.loss, len(batch)

    def evaluate(self) -> dict[str, float]:
        return {}

    def save_model(self, output: Path) -> None:
        train_len = self.encoder.max_seq_length
        self.encoder.set_max_seq_length(self.model_max_len)
        try:
            self.encoder.save(output)
        finally:
            self.encoder.set_max_seq_length(train_len)
        base_prefix = f"{self.mlm.base_model_prefix}."
        head = {
            k: v.detach().cpu().contiguous().clone()
            for k, v in self.mlm.state_dict().items()
            if not k.startswith(base_prefix) and "decoder.weight" not in k
        }
        save_file(head, str(output / HEAD_FILE))


def train_mlm(cfg: MlmConfig) -> dict[str, Any]:
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    texts = read_texts(cfg.corpus, cfg.skip_bad_lines)
    if not texts:
        raise DataError(cfg.corpus, None, "no text to train on")
    encoder = Encoder.load(cfg.model, device)
    task_max = min(cfg.max_seq_length, encoder.max_seq_length)
    output = Path(cfg.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "train_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
    task = MlmTask(cfg, encoder, texts, task_max)
    summary = run(task, cfg, device)
    plot_curves(output / METRICS_FILE, output / "training_curves.png")
    summary.update({"texts": len(texts), "output": str(output)})
    return summary
