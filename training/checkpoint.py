"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint holds the trained modules, the AdamW state, the scheduler, the RNG state and the
data position. It is written to a staging folder and swapped in atomically, so a kill -9 at
any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from core.durable import publish, staging_dir
from core.errors import SemsearchError

STATE_FILE = "state.json"


def _tensors(module_states: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors that share storage (tied embeddings)
    return {
        f"{name}/{key}": t.detach().cpu().contiguous().clone()
        for name, sd in module_states.items()
        for key, t in sd.items()
    }


def save_checkpoint(
    folder: Path,
    modules: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: dict[str, Any],
) -> None:
    staging = staging_dir(folder)
    save_file(_tensors({n: m.state_dict() for n, m in modules.items()}), str(staging / "modules.safetensors"))
    opt = optimizer.state_dict()
    opt_tensors: dict[str, torch.Tensor] = {}
    opt_scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in opt["state"].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                opt_tensors[f"{pid}/{key}"] = value.detach().cpu().contiguous().clone()
            else:
                opt_scalars.setdefault(str(pid), {})[key] = value
    save_file(opt_tensors, str(staging / "optimizer.safetensors"))
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    save_file(rng, str(staging / "rng.safetensors"))
    payload = {
        **state,
        "optimizer": {"param_groups": opt["param_groups"], "scalars": opt_scalars},
        "scheduler": scheduler.state_dict(),
    }
    (staging / STATE_FILE).write_text(json.dumps(payload, indent=2, default=float) + "\n")
    publish(staging, folder)


def has_checkpoint(folder: Path) -> bool:
    return (folder / STATE_FILE).is_file()


def load_checkpoint(
    folder: Path,
    modules: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, Any]:
    try:
        payload = json.loads((folder / STATE_FILE).read_text())
        weights = load_file(str(folder / "modules.safetensors"))
        opt_tensors = load_file(str(folder / "optimizer.safetensors"))
        rng = load_file(str(folder / "rng.safetensors"))
    except (OSError, ValueError) as exc:
        raise SemsearchError(f"{folder}: unreadable checkpoint ({exc})") from exc
    for name, module in modules.items():
        prefix = f"{name}/"
        module.load_state_dict({k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)})
    opt_state: dict[int, dict[str, Any]] = {}
    for key, value in opt_tensors.items():
        pid, name = key.split("/", 1)
        opt_state.setdefault(int(pid), {})[name] = value
    for pid, scalars in payload["optimizer"]["scalars"].items():
        opt_state.setdefault(int(pid), {}).update(scalars)
    optimizer.load_state_dict({"state": opt_state, "param_groups": payload["optimizer"]["param_groups"]})
    scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    return {k: v for k, v in payload.items() if k not in ("optimizer", "scheduler")}
