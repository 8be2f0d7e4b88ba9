"""``training_curves.png``: loss and dev metrics against step, from ``metrics.jsonl``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def plot_curves(metrics_path: Path, png_path: Path) -> bool:
    """Returns False (and logs why) when there is nothing to plot or matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed (pip install 'semsearch[train]'); no %s", png_path.name)
        return False
    rows = (
        [json.loads(r) for r in metrics_path.read_text().splitlines() if r.strip()]
        if metrics_path.exists()
        else []
    )
    losses = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    dev_keys = sorted({k for r in rows for k in r if k.startswith("dev_")})
    if not losses and not dev_keys:
        return False
    fig, axes = plt.subplots(1, 1 + bool(dev_keys), figsize=(11 if dev_keys else 6, 4), squeeze=False)
    ax = axes[0][0]
    if losses:
        ax.plot(*zip(*losses, strict=True), label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("training loss")
    if dev_keys:
        ax2 = axes[0][1]
        for key in dev_keys:
            points = [(r["step"], r[key]) for r in rows if key in r]
            ax2.plot(*zip(*points, strict=True), marker="o", label=key)
        ax2.set_xlabel("step")
        ax2.set_title("dev metrics")
        ax2.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return True
