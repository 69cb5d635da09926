"""Pictures and tables of a run: generated-sample grids, loss curves, accuracy vs budget."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..files import atomic  # noqa: E402
from ..run import Metrics  # noqa: E402


def sample_grid(images: torch.Tensor, columns: int, padding: int = 2) -> torch.Tensor:
    """images (B, C, H, W) in [-1, 1] -> one picture (C, rows*(H+p)+p, columns*(W+p)+p) in [0, 1],
    the images in rows of `columns` with `padding` black pixels around each (torchvision's
    make_grid, without importing torchvision, which costs every process a second)."""
    b, c, h, w = images.shape
    rows = -(-b // columns)
    grid = torch.zeros(c, rows * (h + padding) + padding, columns * (w + padding) + padding)
    for i, image in enumerate((images.detach().float().cpu().clamp(-1, 1) + 1) / 2):
        top, left = (i // columns) * (h + padding) + padding, (i % columns) * (w + padding) + padding
        grid[:, top:top + h, left:left + w] = image
    return grid


def save_sample_grid(images: torch.Tensor, path: Path) -> None:
    """images (B, C, H, W) in [-1, 1] -> one PNG grid, about square."""
    from PIL import Image

    grid = sample_grid(images, int(len(images) ** 0.5))
    pixels = grid.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()  # (H, W, C)
    with atomic(path) as tmp:
        Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(tmp, format="png")


# (panel title, [(metrics.jsonl key, line label suffix)]): the losses, then what a semi-supervised run is doing
PANELS = (("discriminator loss", [("loss_d", "")]), ("generator loss", [("loss_g", "")]),
          ("supervised loss", [("loss_sup", "")]), ("validation accuracy %", [("val", "")]),
          ("learning rate", [("lr", ""), ("lr_g", " (generator)")]),
          ("pseudo-label mask rate", [("mask_rate", "")]), ("pseudo-label loss", [("loss_pl", "")]),
          ("D(real) on unlabeled, D(fake)", [("d_real", " real"), ("d_fake", " fake")]))


def plot_losses(metrics_path: Path, out: Path) -> None:
    """Losses, validation accuracy and the diagnostics over steps (learning rates, the share of
    unlabeled images above the pseudo-label threshold, D(real) and D(fake)), one line per method,
    from the per-step metrics file (JSONL); report.html shows this picture."""
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    fig, axes = plt.subplots(2, 4, figsize=(16, 7))
    for i, method in enumerate(dict.fromkeys(r["method"] for r in rows)):  # in training order
        mine = [r for r in rows if r["method"] == method]
        for ax, (title, keys) in zip(axes.flat, PANELS):
            for j, (key, suffix) in enumerate(keys):
                points = [(r["step"], 100 * r[key] if key == "val" else r[key]) for r in mine if key in r]
                if points:
                    ax.plot(*zip(*points), label=method + suffix, color=f"C{i}", linestyle=("-", "--")[j],
                            marker="o" if key == "val" else None)
    for ax, (title, _) in zip(axes.flat, PANELS):
        ax.set(title=title, xlabel="iteration")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4), useOffset=False)  # short labels: fixed margins
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.055, right=0.99, bottom=0.08, top=0.95, wspace=0.3, hspace=0.35)  # tight_layout's
    save_figure(fig, out, dpi=90, tight=False)  # margins, fixed: it took a third of a second per run to find them


def format_table(metrics: Metrics) -> str:
    """The terminal table: method, labeled count, then one accuracy column per evaluation set."""
    methods = metrics.methods
    sets = list(next(iter(methods.values())).accuracy)
    rows = [["method", "labeled", *sets, "train s"]]
    rows += [[name, str(metrics.protocol.n_labeled), *(f"{m.accuracy[s]:.4f}" for s in sets), f"{m.train_seconds:.1f}"]
             for name, m in methods.items()]
    return text_table(rows)


def text_table(rows: list[list[str]]) -> str:
    """Rows of cells (the first the header) as aligned columns."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def plot_budget_curves(rows: list[dict], out: Path) -> None:
    """Accuracy against label budget, one line per method and unlabeled source, one panel per
    evaluation set (validation and holdout side by side)."""
    sets = sorted({r["eval_set"] for r in rows}, key=lambda s: ("+" in s, not s.startswith("val"), s))
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
    save_figure(fig, out, dpi=100)


def save_figure(fig: plt.Figure, out: Path, *, dpi: int, tight: bool = True) -> None:
    if tight:
        fig.tight_layout()
    try:
        with atomic(out) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
