"""Pictures and tables of a run: generated-sample grids, loss curves, accuracy vs budget."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torchvision.utils import save_image  # noqa: E402


def save_sample_grid(images: torch.Tensor, path: Path) -> None:
    """images (B, C, H, W) in [-1, 1] -> one PNG grid."""
    save_image(images.float().cpu(), str(path), nrow=int(len(images) ** 0.5), normalize=True,
               value_range=(-1, 1), padding=2)


def plot_losses(metrics_path: Path, out: Path) -> None:
    """Loss curves per method from the per-step metrics file (JSONL)."""
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    methods = sorted({r["method"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for method in methods:
        steps = [r for r in rows if r["method"] == method and "loss_sup" in r]
        for key in ("loss_sup", "loss_d", "loss_g"):
            if steps and key in steps[0]:
                axes[0].plot([r["step"] for r in steps], [r[key] for r in steps], label=f"{method} {key}")
        evals = [r for r in rows if r["method"] == method and "val" in r]
        axes[1].plot([r["step"] for r in evals], [r["val"] for r in evals], marker="o", label=method)
    axes[0].set(xlabel="iteration", ylabel="loss", title="training losses", yscale="log")
    axes[1].set(xlabel="iteration", ylabel="accuracy", title="validation accuracy")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


RUN_FACTS = ("train_seconds", "iterations", "selected_step")  # per-method entries that are not accuracies


def accuracies(method_result: dict) -> dict[str, float]:
    """Evaluation set -> accuracy, from one method's entry of metrics.json."""
    return {k: v for k, v in method_result.items() if k not in RUN_FACTS}


def format_table(metrics: dict) -> str:
    """The terminal table: method, labeled count, then one accuracy column per evaluation set."""
    methods = metrics["methods"]
    sets = list(accuracies(next(iter(methods.values()))))
    n = metrics["protocol"]["n_labeled"]
    rows = [["method", "labeled", *sets, "train s"]]
    rows += [[name, str(n), *(f"{m[s]:.4f}" for s in sets), f"{m['train_seconds']:.1f}"]
             for name, m in methods.items()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


def plot_budget_curves(rows: list[dict], out: Path) -> None:
    """Accuracy against label budget, one line per method and unlabeled source, one panel per
    evaluation set (validation and holdout side by side)."""
    sets = sorted({r["eval_set"] for r in rows}, key=lambda s: (s.endswith("+adabn"), not s.startswith("val"), s))
    fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 4), squeeze=False)
    for ax, eval_set in zip(axes[0], sets):
        sel = [r for r in rows if r["eval_set"] == eval_set]
        for method, source in sorted({(r["method"], r["unlabeled"]) for r in sel}):
            line = sorted((r for r in sel if r["method"] == method and r["unlabeled"] == source),
                          key=lambda r: r["n_labeled"])
            label = method if source == "-" else f"{method} (unlabeled: {source})"
            ax.errorbar([r["n_labeled"] for r in line], [100 * r["mean"] for r in line],
                        yerr=[100 * r["std"] for r in line], marker="o", capsize=3, label=label)
        ax.set(xscale="log", xlabel="labeled images", ylabel="accuracy %", title=eval_set)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
