"""Which images should a person label? Before any label exists: learn features without labels,
by telling two random views of an image apart from views of other images (SimCLR, a contrastive
pretext) or as the discriminator of a short GAN, then pick one image per k-means cluster of those
features (the nearest its centre, or the most typical: TypiClust), skipping near-duplicates and
outlier clusters.

`sgan suggest-labels` writes picks.csv (index, path, an empty label column to fill in) and a
contact sheet; `sgan train --labels-csv picks.csv` trains on the filled-in picks.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from torch import nn
from tqdm import tqdm

from . import losses
from .files import atomic, atomic_write_text, csv_text
from .config import Config, Suggestion, check_values
from .data.imageset import ImageSet
from .data.picks import COLUMNS
from .data.prepare import candidate_pool
from .data.readers import open_source
from .plan import make_plan
from .data.transforms import colour_jitter, random_affine, to_model_range
from .errors import SganError
from .methods import build_method
from .methods.base import autocast
from .models import build_classifier, memory_format
from .run import SuggestFolder

TYPICALITY_NEIGHBOURS = 20  # TypiClust's k
# picks closer than this share of the features' spread (their RMS distance to their mean) count as the same
# image: about cosine 0.98 for unit features around the origin, and scale-free, so that features sharing a
# large common part (a GAN discriminator's: cosine > 0.98 between nearly any two) are told apart too
DUPLICATE_DISTANCE = 0.2
OUTLIER_SHARE = 0.1  # a cluster under this share of the mean cluster size holds outliers
PRETEXT_BATCH = 256  # images per contrastive step, each seen in two views
TEMPERATURE = 0.2
PAGE_SIDE = 256  # the largest side of the images `sgan label` shows
# the settings that decide the pool and its split: what `sgan train` must be given again to find the picks
TRAIN_KEYS = ("data", "preset", "val_data", "val_fraction", "val_per_class", "test_per_class", "num_classes",
              "image_size", "channels", "seed")
DEFAULTS = Config()


def views(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random view of every image (B, C, H, W) in [-1, 1]: rotated up to 20 degrees, shifted up
    to 15% and zoomed up to 20%; colour images also get their own brightness and contrast, or
    colour alone would tell one image's views from another's."""
    v = random_affine(x, degrees=20, translate=0.15, scale=0.2, generator=generator)
    return colour_jitter(v, 0.4, generator) if x.shape[1] == 3 else v


def pretext_network(cfg: Config, *, outputs: int, device: torch.device) -> nn.Module:
    """The run's classifier network with `outputs` logits and no input noise, for a pretext task."""
    return build_classifier(dataclasses.replace(cfg, input_noise=0.0, num_classes=outputs)).to(
        device, memory_format=memory_format(cfg))


@torch.no_grad()
def plain_features(net: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The trained network's penultimate features of the plain images in eval mode, (N, F), on the CPU."""
    net.eval()
    return torch.cat([net.features(chunk.to(device)).float().cpu() for chunk in x.split(512)])


def contrastive_features(x: torch.Tensor, cfg: Config, *, iterations: int, device: torch.device,
                         progress: bool = True) -> torch.Tensor:
    """Train the run's classifier network (and a small projection head) so that two views of an
    image lie closer than views of the other images of the batch (Chen et al. 2020), then return
    its penultimate features of the plain images, (N, C, H, W) -> (N, F)."""
    torch.manual_seed(cfg.seed)
    amp = bool(cfg.amp)  # the plan chose it (make_plan)
    net = pretext_network(cfg, outputs=128, device=device)
    net.eval()  # the width of the features, without touching BatchNorm's statistics
    with torch.no_grad():
        width = net.features(x[:2].to(device)).shape[1]
    net.train()
    project = nn.Sequential(nn.Linear(width, 512), nn.ReLU(), nn.Linear(512, 128)).to(device)
    opt = torch.optim.Adam([*net.parameters(), *project.parameters()], lr=1e-3)
    gen = torch.Generator().manual_seed(cfg.seed)
    for _ in tqdm(range(iterations), desc="contrastive pretext", disable=not progress, leave=False):
        batch = x[torch.randint(len(x), (PRETEXT_BATCH,), generator=gen)]
        pair = torch.cat([views(batch, gen), views(batch, gen)]).to(device)  # (2B, C, H, W)
        with autocast(pair, amp):
            z = project(net.features(pair))  # (2B, 128)
        loss = losses.contrastive_loss(z.float(), TEMPERATURE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return plain_features(net, x, device)


def gan_features(x: torch.Tensor, cfg: Config, *, iterations: int, device: torch.device,
                 progress: bool = True) -> torch.Tensor:
    """A short unsupervised GAN on the images, trained by the SGAN method itself: with one logit
    (K = 1) and no labeled images its step is the plain GAN's (D(x) = sigmoid of the logit), the
    run's networks, non-saturating, at DCGAN's Adam settings; then the discriminator's
    penultimate features of the plain images, (N, C, H, W) -> (N, F). A DCGAN discriminator's
    features classify well (Radford et al. 2016)."""
    torch.manual_seed(cfg.seed)
    plain_gan = dataclasses.replace(  # unlabeled_weight 2: the real and fake terms at full weight, as a GAN's
        cfg, num_classes=1, input_noise=0.0, generator_loss="nonsaturating", pseudo_label_weight=0.0,
        unlabeled_weight=2.0, label_smoothing=0.0, split_bn=False, diff_augment=False, pull_away_weight=0.0,
        fake_batch_size=PRETEXT_BATCH, lr=2e-4, beta1=0.5, lr_schedule="constant")
    gan = build_method("sgan", plain_gan, device=device)
    no_labels = x[:0].to(device), torch.zeros(0, dtype=torch.int64, device=device)  # (0, C, H, W), (0,)
    gen = torch.Generator().manual_seed(cfg.seed)
    for _ in tqdm(range(iterations), desc="GAN warm-up", disable=not progress, leave=False):
        gan.train_step(*no_labels, x[torch.randint(len(x), (PRETEXT_BATCH,), generator=gen)].to(device))
    return plain_features(gan.classifier, x, device)


def typicality(points: np.ndarray, k: int) -> np.ndarray:
    """TypiClust's typicality of each row of `points` (N, D): the inverse of its mean distance to
    its k nearest other rows (k < N), (N,): high in dense regions."""
    distances = np.linalg.norm(points[:, None] - points[None], axis=2)  # (N, N)
    nearest = np.sort(distances, axis=1)[:, 1:k + 1]  # (N, k), itself (distance 0) left out
    return 1 / np.maximum(nearest.mean(axis=1), 1e-12)


def pick_representatives(features: np.ndarray, budget: int, seed: int, *, by: str = "centre",
                         reserve: int = 0) -> np.ndarray:
    """Positions of up to `budget` rows: per k-means cluster one row that is not a near-duplicate
    of an earlier pick, the nearest its centre (`by` "centre") or the most typical (`by`
    "typicality": the densest, TypiClust, Hacohen et al. 2022), else the cluster's next member;
    clusters too small to be more than outliers give their place to a refit with more clusters,
    whose largest `budget` clusters are used. Where a cluster's members are all near-duplicates
    of earlier picks, the budget is filled farthest-first: the row of the used clusters farthest
    from every pick, while it is no near-duplicate of one (never an outlier cluster's row).
    Fewer than `budget` only when no such row is left.
    Near-duplicates are told apart in the centred (PCA) space: closer than DUPLICATE_DISTANCE of
    the features' spread.
    `reserve`: after the picks (sorted), up to this many stand-ins for picks a person skips, in
    the order to offer them: round by round, each used cluster's next member by the same rule,
    none a near-duplicate of a pick or an earlier stand-in (none when the picks fell short)."""
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)  # (N, F)
    dims = min(50, unit.shape[1], len(unit))
    reduced = PCA(n_components=dims, random_state=seed).fit_transform(unit)  # (N, dims), centred
    limit = max(DUPLICATE_DISTANCE * np.sqrt((reduced ** 2).sum(axis=1).mean()), 1e-9)  # identical rows: duplicates
    k = budget
    for _ in range(2):  # fit; refit once with as many extra clusters as there were outlier clusters
        km = KMeans(n_clusters=min(k, len(reduced)), n_init=3, random_state=seed).fit(reduced)
        sizes = np.bincount(km.labels_, minlength=km.n_clusters)
        small = int((sizes < OUTLIER_SHARE * len(reduced) / km.n_clusters).sum())
        if small == 0 or k > budget:
            break
        k = budget + small
    clusters = sorted(np.argsort(-sizes, kind="stable")[:budget])  # the largest, in cluster order
    picks: list[int] = []
    gap = np.full(len(reduced), np.inf)  # (N,) each row's distance to its nearest pick

    def take(i: int) -> None:
        picks.append(int(i))
        np.minimum(gap, np.linalg.norm(reduced - reduced[i], axis=1), out=gap)

    members_by_score = {}  # cluster -> its rows, best first
    for c in clusters:
        members = np.flatnonzero(km.labels_ == c)
        if by == "typicality" and len(members) > 1:
            score = -typicality(reduced[members], min(TYPICALITY_NEIGHBOURS, len(members) - 1))
        else:
            score = np.linalg.norm(reduced[members] - km.cluster_centers_[c], axis=1)
        members_by_score[c] = members[np.argsort(score, kind="stable")]
        fresh = members_by_score[c][gap[members_by_score[c]] >= limit]
        if fresh.size:
            take(fresh[0])
    gap[~np.isin(km.labels_, clusters)] = -np.inf  # the outlier clusters' rows are never a farthest-first pick
    while len(picks) < budget and gap.max() >= limit:  # farthest-first among the rows that duplicate no pick
        take(int(np.argmax(gap)))
    chosen = sorted(picks)
    while reserve and len(picks) - len(chosen) < reserve:  # rounds over the clusters, while one has a fresh member
        before = len(picks)
        for c in members_by_score:
            fresh = members_by_score[c][gap[members_by_score[c]] >= limit]
            if fresh.size and len(picks) - len(chosen) < reserve:
                take(fresh[0])
        if len(picks) == before:
            break
    return np.array(chosen + picks[len(chosen):], dtype=np.int64)


def contact_sheet(images: np.ndarray, numbers: list[int]) -> bytes:
    """A PNG of the picks (N, C, H, W uint8), each titled with its row number in picks.csv."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.35 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, number in zip(axes.flat, images, numbers):
        picture = image.transpose(1, 2, 0)
        ax.imshow(picture[..., 0] if picture.shape[2] == 1 else picture, cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"#{number}", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def page_image(pool: ImageSet, i: int) -> bytes:
    """A PNG of pool image `i` for a person to judge: the photo's own file at up to PAGE_SIDE px
    where it has one, else the image as read."""
    from PIL import Image

    if pool.paths is not None:
        with Image.open(pool.paths[i]) as photo:
            image = photo.convert("L" if pool.images.shape[1] == 1 else "RGB")
        image.thumbnail((PAGE_SIDE, PAGE_SIDE))
    else:
        picture = pool.images[i].transpose(1, 2, 0)  # (H, W, C)
        image = Image.fromarray(picture[..., 0] if picture.shape[2] == 1 else picture)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def class_names(cfg: Config, pool: ImageSet) -> list[str] | None:
    """What a person may answer, as picks.csv's label column will name it: the pool's class
    folders, else --val-data's, else the class numbers; None where nothing says how many."""
    if pool.classes:
        return list(pool.classes)
    if cfg.val_data and (named := open_source(cfg.val_data).classes):
        return list(named)
    return [str(c) for c in range(cfg.num_classes)] if cfg.num_classes else None


def train_flags(cfg: Config) -> str:
    """The `sgan train` flags that find the same pool and split again: the settings that decide
    them, as given to suggest-labels (the data always)."""
    given = {key: getattr(cfg, key) for key in TRAIN_KEYS if key == "data" or getattr(cfg, key) != getattr(DEFAULTS, key)}
    for key in ("data", "val_data"):  # paths that work from any folder, as the picks' own path does
        if given.get(key) and Path(given[key]).exists():
            given[key] = Path(given[key]).resolve()
    return " ".join(f"--{key.replace('_', '-')} {shlex.quote(str(value))}" for key, value in given.items())


def suggest_labels(cfg: Config, *, budget: int, out: str | Path, strategy: str = "representative",
                   features: str = "contrastive", pretext_iterations: int = 1500,
                   device: torch.device | None = None) -> dict[str, Any]:
    """Write picks.csv, reserve.csv, images/, picks.png and suggest.json to `out`; return
    suggest.json's content. Candidates are the images `sgan train` with the same config could
    label: the pool less its validation and test images. reserve.csv holds up to `budget` more
    candidates, in order, to stand in for picks a person skips (`sgan label`). `features`: what
    the clusters are made of, learnt in `pretext_iterations` steps without labels."""
    check_values(Suggestion(strategy, features, pretext_iterations), "suggest-labels")
    given = cfg
    plan = make_plan(cfg, labeled=False)
    cfg = plan.config
    pool, candidates = candidate_pool(cfg, plan.pool)
    if not 0 < budget <= len(candidates):
        raise SganError(f"budget must be between 1 and the {len(candidates)} candidate images, got {budget}")
    folder = SuggestFolder(out)
    if folder.path.exists() and not folder.path.is_dir():
        raise SganError(f"{out}: output path is a file")
    x = to_model_range(pool.images[candidates])  # (N, C, H, W) in [-1, 1]
    spare = min(budget, len(candidates) - budget)  # stand-ins for skipped picks
    if strategy == "random":  # uniform over candidates, no class balancing: the baseline
        rng = np.random.default_rng(cfg.seed)
        chosen = np.sort(rng.choice(len(candidates), budget, replace=False))
        chosen = np.concatenate([chosen, rng.permutation(np.setdiff1d(np.arange(len(candidates)), chosen))[:spare]])
    else:
        learn = contrastive_features if features == "contrastive" else gan_features
        learnt = learn(x, cfg, iterations=pretext_iterations, device=device or torch.device(plan.device),
                       progress=cfg.progress)
        chosen = pick_representatives(learnt.numpy(), budget, cfg.seed,
                                      by="typicality" if strategy == "typical" else "centre", reserve=spare)
    picks, reserve = candidates[chosen[:budget]], candidates[chosen[budget:]]
    if len(picks) < budget:
        print(f"sgan: suggest-labels: only {len(picks)} of the {budget} images asked for are not near-duplicates "
              f"of one another; picks.csv holds {len(picks)}", file=sys.stderr)
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.images.mkdir(exist_ok=True)
    for i in (*picks, *reserve):
        with atomic(folder.image(int(i))) as tmp:
            tmp.write_bytes(page_image(pool, int(i)))

    def rows(indices: np.ndarray) -> list[list]:
        return [[int(i), "" if pool.paths is None else str(pool.paths[i]), ""] for i in indices]

    atomic_write_text(folder.reserve, csv_text(COLUMNS[:2], [row[:2] for row in rows(reserve)]))
    with atomic(folder.contact_sheet) as tmp:
        tmp.write_bytes(contact_sheet(pool.images[picks], list(range(1, len(picks) + 1))))
    summary = {"data": cfg.data, "strategy": strategy, "budget": budget, "seed": cfg.seed,
               "candidates": len(candidates), "picked": len(picks), "reserve": len(reserve),
               "classes": class_names(cfg, pool), "train_flags": train_flags(given),
               "features": features if strategy != "random" else None,
               "pretext_iterations": pretext_iterations if strategy != "random" else 0}
    atomic_write_text(folder.summary, json.dumps(summary, indent=2))
    atomic_write_text(folder.picks, csv_text(COLUMNS, rows(picks)))  # last: the folder is whole
    return summary
