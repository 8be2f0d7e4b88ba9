"""The training loop every objective shares (bi-encoder now, cross-encoder and MLM too).

AdamW with linear warm-up then linear decay, gradient clipping and accumulation, bf16 autocast
where the hardware has it, evaluation every ``eval_steps`` and at each epoch end, atomic
checkpoints every ``checkpoint_steps`` with exact resume, ``metrics.jsonl`` and a progress bar.
A task supplies the model parts, the batches, the loss and the evaluation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm import tqdm

from core.device import bf16_supported, native_precision
from core.errors import InvalidInputError
from core.precision_names import TRAIN_PRECISIONS
from training.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoint"


@dataclass(kw_only=True)
class LoopConfig:
    """The loop's knobs; every run config extends this (see ``RunConfig``)."""

    output: str
    epochs: int = 1
    lr: float = 2e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    grad_accum: int = 1
    eval_steps: int = 0  # 0: evaluate at epoch ends only
    checkpoint_steps: int = 500  # 0: checkpoint at epoch ends only
    log_steps: int = 10
    precision: str = "auto"  # auto | fp32 | bf16
    resume: bool = False
    progress: bool = True
    max_steps: int = 0  # stop after this many optimiser steps (0: no limit); for smoke runs

    def validate(self) -> None:
        if self.epochs < 1 or self.grad_accum < 1:
            raise InvalidInputError("epochs and grad_accum must be >= 1")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise InvalidInputError("warmup_ratio must be in [0, 1)")
        if self.lr <= 0:
            raise InvalidInputError("lr must be > 0")
        if self.precision not in TRAIN_PRECISIONS:
            raise InvalidInputError(f"precision must be one of {', '.join(TRAIN_PRECISIONS)}")


@dataclass(kw_only=True)
class RunConfig(LoopConfig):
    """What every training command shares on top of the loop; objectives add their own fields.
    The resolved config is written next to the outputs as ``train_config.json``."""

    model: str
    batch_size: int = 16
    seed: int = 42
    device: str = "auto"
    skip_bad_lines: bool = False


@dataclass(kw_only=True)
class PairRunConfig(RunConfig):
    """The pair trainers' data fields (bi-encoder and cross-encoder)."""

    train: list[str]
    dev: str | None = None
    train_format: str = "auto"
    dev_format: str = "auto"
    split: str | None = None  # SICK split of the training files
    dev_split: str | None = None  # SICK split of the dev file
    max_seq_length: int | None = None  # default: the model's
    skipped_lines: int = 0


class Task(Protocol):
    """What the loop needs from an objective."""

    modules: dict[str, nn.Module]  # trained and checkpointed
    key_metric: str | None  # dev metric that picks the best model (higher is better)

    def num_examples(self) -> int: ...
    def batches(self, epoch: int) -> Sequence[Any]: ...  # deterministic for a given epoch
    def loss(self, batch: Any) -> tuple[torch.Tensor, int]: ...  # (mean loss, examples in batch)
    def evaluate(self) -> dict[str, float]: ...
    def save_model(self, output: Path) -> None: ...


def linear_warmup(total_steps: int, warmup_steps: int) -> Any:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def param_groups(modules: dict[str, nn.Module], weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and LayerNorm weights (BERT's recipe)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for module in modules.values():
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            (
                no_decay if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name else decay
            ).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def autocast_for(device: torch.device, precision: str) -> tuple[str, Any]:
    use_bf16 = precision == "bf16" or (
        precision == "auto" and native_precision(device, TRAIN_PRECISIONS) == "bf16"
    )
    if precision == "bf16" and not bf16_supported(device):
        raise InvalidInputError(f"bf16 requested but {device} has no native bf16 support")
    if use_bf16:
        return "bf16", lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return "fp32", contextlib.nullcontext


class MetricsLog:
    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        if resume_step is None:
            path.write_text("")
        elif path.exists():
            # Rows after the checkpoint were produced by the run that died; the resumed run redoes them.
            kept = [
                r for r in path.read_text().splitlines() if r and json.loads(r).get("step", 0) <= resume_step
            ]
            path.write_text("".join(r + "\n" for r in kept))

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")


def _skip(batches: Sequence[Any], start: int) -> Iterator[tuple[int, Any]]:
    for i in range(start, len(batches)):
        yield i, batches[i]


def run(task: Task, cfg: LoopConfig, device: torch.device) -> dict[str, Any]:
    """Train; returns a summary (steps, best metric, examples/s)."""
    cfg.validate()
    output = Path(cfg.output)
    output.mkdir(parents=True, exist_ok=True)
    steps_per_epoch = math.ceil(len(task.batches(0)) / cfg.grad_accum)
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    warmup = int(total_steps * cfg.warmup_ratio)
    optimizer = torch.optim.AdamW(param_groups(task.modules, cfg.weight_decay), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup(total_steps, warmup))
    precision, autocast = autocast_for(device, cfg.precision)
    ckpt = output / CHECKPOINT_DIR

    state: dict[str, Any] = {"step": 0, "epoch": 0, "batch": 0, "best": None, "examples": 0}
    if cfg.resume and has_checkpoint(ckpt):
        state = load_checkpoint(ckpt, task.modules, optimizer, scheduler)
        log.info(
            "resumed from %s at step %d (epoch %d, batch %d)",
            ckpt,
            state["step"],
            state["epoch"],
            state["batch"],
        )
    elif cfg.resume:
        log.info("--resume: no checkpoint in %s, starting fresh", ckpt)
    metrics = MetricsLog(output / METRICS_FILE, state["step"] if cfg.resume else None)
    log.info(
        "training %d steps (%d warm-up), precision %s, device %s", total_steps, warmup, precision, device
    )

    def checkpoint() -> None:
        save_checkpoint(ckpt, task.modules, optimizer, scheduler, state)

    def evaluate() -> None:
        if state.get("evaluated_at") == state["step"]:
            return  # e.g. an eval_steps boundary that is also the end of an epoch
        state["evaluated_at"] = state["step"]
        for m in task.modules.values():
            m.eval()
        with torch.inference_mode():
            result = task.evaluate()
        for m in task.modules.values():
            m.train()
        if not result:
            return
        metrics.write(
            {"step": state["step"], "epoch": state["epoch"], **{f"dev_{k}": v for k, v in result.items()}}
        )
        key = task.key_metric
        if key and key in result and (state["best"] is None or result[key] > state["best"]):
            state["best"] = result[key]
            task.save_model(output)
            log.info("step %d: new best dev %s %.4f, saved to %s", state["step"], key, result[key], output)

    for m in task.modules.values():
        m.train()
    bar = tqdm(
        total=total_steps,
        initial=state["step"],
        desc="training",
        unit="step",
        disable=not cfg.progress,
        file=sys.stderr,
    )
    started, examples_here = time.perf_counter(), 0
    window_loss, window_n = 0.0, 0
    done = state["step"] >= total_steps
    while not done and state["epoch"] < cfg.epochs:
        batches = task.batches(state["epoch"])
        for bi, batch in _skip(batches, state["batch"]):
            with autocast():
                loss, n = task.loss(batch)
            (loss / cfg.grad_accum).backward()
            window_loss += float(loss.detach())
            window_n += 1
            examples_here += n
            state["examples"] += n
            if (bi + 1) % cfg.grad_accum and bi + 1 != len(batches):
                continue
            torch.nn.utils.clip_grad_norm_(
                [p for g in optimizer.param_groups for p in g["params"]], cfg.max_grad_norm
            )
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            state["batch"] = bi + 1
            rate = examples_here / max(1e-9, time.perf_counter() - started)
            bar.update(1)
            bar.set_postfix(loss=f"{window_loss / window_n:.4f}", ex_s=f"{rate:.1f}")
            if state["step"] % cfg.log_steps == 0:
                metrics.write(
                    {
                        "step": state["step"],
                        "epoch": state["epoch"],
                        "loss": window_loss / window_n,
                        "lr": scheduler.get_last_lr()[0],
                        "examples_per_s": rate,
                    }
                )
                window_loss, window_n = 0.0, 0
            if cfg.eval_steps and state["step"] % cfg.eval_steps == 0:
                evaluate()
            if state["step"] >= total_steps:
                done = True
                break
            if cfg.checkpoint_steps and state["step"] % cfg.checkpoint_steps == 0:
                checkpoint()
        if not done or state["batch"] >= len(batches):
            state["epoch"] += 1
            state["batch"] = 0
        evaluate()
        checkpoint()
    bar.close()
    seconds = time.perf_counter() - started
    if task.key_metric is None or state["best"] is None:
        task.save_model(output)  # no dev metric: the final model is the result
    return {
        "steps": state["step"],
        "best": state["best"],
        "precision": precision,
        "seconds": seconds,
        "examples_per_s": examples_here / seconds if seconds > 0 else 0.0,
    }
