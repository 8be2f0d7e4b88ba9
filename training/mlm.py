"""``semsearch train mlm``: masked-language-model domain adaptation before siamese fine-tuning.

BERT's recipe: 15% of the (non-special, non-padding) tokens are chosen; of those 80% become
[MASK], 10% a random token, 10% stay. The loss is cross-entropy over the chosen positions only.
The transformer is shared with a ``core`` encoder, so the output is a model folder in the same
layout as the input (pooling kept) that ``train bi-encoder`` and the indexer load unchanged; the
MLM head is saved beside it as ``mlm_head.safetensors`` so a later run can continue.

The text is every distinct line of ``corpus`` files and every distinct sentence of ``pairs`` files
(both sides), less the sentences of ``exclude`` files (a dev or test set the adapted model is later
judged on). ``dev_size`` of the rest, drawn by the seed, are held out and never trained on: the
masked-token accuracy on them, with the same masks each time, is measured before training and at
each evaluation, so a run says how much it learnt (``mlm_eval.json``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
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
from training.data import pair_sentences
from training.length_batches import length_batches
from training.loop import METRICS_FILE, RunConfig, run

log = logging.getLogger(__name__)
HEAD_FILE = "mlm_head.safetensors"


@dataclass(kw_only=True)
class MlmConfig(RunConfig):
    corpus: list[str] = dataclasses.field(default_factory=list)
    pairs: list[str] = dataclasses.field(default_factory=list)
    exclude: list[str] = dataclasses.field(default_factory=list)
    dev_size: int = 2000
    lr: float = 5e-5
    max_seq_length: int = 128
    mask_prob: float = 0.15

    def __post_init__(self) -> None:
        if isinstance(self.corpus, str):  # the one-file form older configs and callers use
            self.corpus = [self.corpus]
        if self.dev_size < 0:
            raise InvalidInputError("dev_size must be >= 0")


EVAL_FILE = "mlm_eval.json"
EVAL_SEED = 1234  # the held-out masks: one draw, the same before and after training


def corpus_texts(
    corpus: Sequence[str | Path],
    pairs: Sequence[str | Path],
    skip_bad_lines: bool = False,
    exclude: Sequence[str | Path] = (),
) -> list[str]:
    """Every distinct line of the ``corpus`` files and sentence of the ``pairs`` files (both
    sides), first occurrence order, less the sentences of the ``exclude`` pair files: the text
    ``train mlm`` learns from and ``train extend-vocab`` takes its vocabulary from."""
    texts = [t for path in corpus for t in read_texts(path, skip_bad_lines)] + pair_sentences(pairs)
    excluded = set(pair_sentences(exclude))
    return [t for t in dict.fromkeys(texts) if t not in excluded]


def mlm_texts(cfg: MlmConfig) -> tuple[list[str], list[str]]:
    """(train, held-out) texts: corpus lines and pair sentences, distinct, less ``exclude``."""
    texts = corpus_texts(cfg.corpus, cfg.pairs, cfg.skip_bad_lines, cfg.exclude)
    if not texts:
        raise DataError((cfg.corpus + cfg.pairs or ["(none)"])[0], None, "no text to train on")
    n_dev = min(cfg.dev_size, len(texts) // 10)  # never more than a tenth of a small corpus
    held = set(np.random.default_rng(cfg.seed).choice(len(texts), n_dev, replace=False).tolist())
    train = [t for i, t in enumerate(texts) if i not in held]
    dev = [t for i, t in enumerate(texts) if i in held]
    return train, dev


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

    def __init__(
        self,
        cfg: MlmConfig,
        encoder: Encoder,
        texts: list[str],
        max_len: int,
        dev_texts: list[str] | None = None,
    ) -> None:
        if not 0.0 < cfg.mask_prob < 1.0:
            raise InvalidInputError("mask_prob must be in (0, 1)")
        self.cfg, self.encoder = cfg, encoder
        # Train on shorter windows, but save the model with its own max_seq_length.
        self.model_max_len = encoder.max_seq_length
        encoder.set_max_seq_length(max_len)
        self.mlm = masked_lm_for(encoder)
        # The prediction head alone (transform + tied decoder): BERT's ``cls``, RoBERTa's ``lm_head``.
        self.head: nn.Module = getattr(self.mlm, "cls", None) or self.mlm.lm_head
        self.modules: dict[str, nn.Module] = {"mlm": self.mlm}
        self.encodings = encoder.tokenize(texts)
        self.lengths = np.array([len(e.ids) for e in self.encodings])
        tok = encoder.tokenizer
        self.special = torch.tensor(sorted(set(tok.all_special_ids)))
        self.mask_id = int(tok.mask_token_id)
        self.vocab_size = int(self.mlm.get_output_embeddings().weight.shape[0])
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.dev_encodings = encoder.tokenize(dev_texts) if dev_texts else []
        self.last_eval: dict[str, float] = {}

    def num_examples(self) -> int:
        return len(self.encodings)

    def batches(self, epoch: int) -> list[np.ndarray]:
        return length_batches(self.lengths, self.cfg.batch_size, self.cfg.seed + epoch)

    def _forward(
        self, encodings: list[Any], generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, logits, labels) over the chosen positions only. The vocabulary projection runs
        on those 15%, not on every position as ``BertForMaskedLM.forward`` does: with an extended
        vocabulary (36k rows for Chinese) that projection costs more than the six layers below."""
        feats = self.encoder.collate(encodings)
        ids = feats["input_ids"].cpu()
        maskable = (feats["attention_mask"].cpu() == 1) & ~torch.isin(ids, self.special)
        inputs, labels = mask_tokens(
            ids, maskable, self.mask_id, self.vocab_size, self.cfg.mask_prob, generator
        )
        dev = self.encoder.device
        hidden = self.mlm.base_model(
            input_ids=inputs.to(dev),
            attention_mask=feats["attention_mask"],
            token_type_ids=feats["token_type_ids"],
        ).last_hidden_state
        chosen = labels != -100
        targets = labels[chosen].to(dev)
        logits = self.head(hidden[chosen.to(dev)])
        if not len(targets):  # nothing maskable in the batch: a zero that still has a graph
            return logits.sum() * 0.0, logits, targets
        return nn.functional.cross_entropy(logits.float(), targets), logits, targets

    def loss(self, batch: np.ndarray) -> tuple[torch.Tensor, int]:
        loss, _, _ = self._forward([self.encodings[i] for i in batch.tolist()], self.generator)
        return loss, len(batch)

    def evaluate(self) -> dict[str, float]:
        """Masked-token accuracy and loss on the held-out texts. The masks come from one fixed
        seed in one fixed order, so every call scores the same positions."""
        if not self.dev_encodings:
            return {}
        generator = torch.Generator().manual_seed(EVAL_SEED)
        correct = total = 0
        loss_sum = 0.0
        size = max(self.cfg.batch_size, 32)
        for start in range(0, len(self.dev_encodings), size):
            loss, logits, targets = self._forward(self.dev_encodings[start : start + size], generator)
            n = len(targets)
            if not n:
                continue
            correct += int((logits.argmax(-1) == targets).sum())
            loss_sum += float(loss) * n
            total += n
        self.last_eval = {"masked_accuracy": correct / max(1, total), "masked_loss": loss_sum / max(1, total)}
        return self.last_eval

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
    texts, dev_texts = mlm_texts(cfg)
    encoder = Encoder.load(cfg.model, device)
    task_max = min(cfg.max_seq_length, encoder.max_seq_length)
    output = Path(cfg.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "train_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
    task = MlmTask(cfg, encoder, texts, task_max, dev_texts)
    task.mlm.eval()
    with torch.inference_mode():
        before = task.evaluate()
    summary = run(task, cfg, device)  # evaluates at each epoch end (and every eval_steps)
    plot_curves(output / METRICS_FILE, output / "training_curves.png")
    summary.update({"texts": len(texts), "held_out": len(dev_texts), "output": str(output)})
    if before:
        summary["before"], summary["after"] = before, task.last_eval
        report = {k: summary[k] for k in ("texts", "held_out", "steps", "seconds", "before", "after")}
        (output / EVAL_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return summary
