"""Predictions and accuracy of a classifier on in-memory tensors."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .checkpoint import load_weights
from .files import atomic_write_text, csv_text
from .data import ImageSet, load_images
from .data.prepare import LabeledTensors, check_label_range, prepare_images
from .data.folders import read_files
from .data.readers import images_from_array
from .data.transforms import set_stats, shift_scale, to_model_range, to_uint8
from .errors import SganError
from .models import build_classifier, evaluated
from .run import RunFolder


@torch.no_grad()
def predict_logits(classifier: nn.Module, x: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """Logits (N, K) in eval mode (running BatchNorm statistics, no dropout); restores the mode."""
    was_training = classifier.training
    classifier.eval()
    device = next(classifier.parameters()).device
    out = torch.cat([classifier(x[i:i + batch_size].to(device)).float().cpu()
                     for i in range(0, len(x), batch_size)])
    classifier.train(was_training)
    return out


@torch.no_grad()
def adapt_batchnorm(classifier: nn.Module, x: torch.Tensor, *, batch_size: int = 256) -> nn.Module:
    """AdaBN: a copy of the classifier whose BatchNorm statistics are re-estimated on the images
    x (no labels). It looks at the images it will predict, so results using it say so."""
    adapted = copy.deepcopy(classifier).eval()
    device = next(adapted.parameters()).device
    for bn in adapted.modules():
        if isinstance(bn, nn.modules.batchnorm._BatchNorm):
            bn.reset_running_stats()
            bn.momentum = None  # a plain average over all batches
            bn.train()  # only the BatchNorm layers: noise and dropout stay off
    for i in range(0, len(x), batch_size):
        adapted(x[i:i + batch_size].to(device))
    return adapted.eval()


def accuracy(classifier: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (predict_logits(classifier, x).argmax(dim=1) == y.cpu()).float().mean().item()


def diagnose(classifier: nn.Module, x: torch.Tensor, y: torch.Tensor, *, worst: int = 16) -> dict[str, torch.Tensor]:
    """What a report shows of one evaluation set: the confusion matrix (K, K), rows true and
    columns predicted, and the `worst` most confidently wrong images with their labels."""
    probabilities = predict_logits(classifier, x).softmax(dim=1)  # (N, K)
    confidence, predicted = probabilities.max(dim=1)  # (N,), (N,)
    y = y.cpu()
    k = probabilities.shape[1]
    confusion = torch.bincount(y * k + predicted, minlength=k * k).view(k, k)
    wrong = (predicted != y).nonzero().squeeze(1)  # (W,)
    pick = wrong[confidence[wrong].argsort(descending=True)[:worst]]
    return {"confusion": confusion, "wrong_index": pick, "wrong_true": y[pick], "wrong_predicted": predicted[pick],
            "wrong_confidence": confidence[pick], "wrong_images": to_uint8(x[pick].cpu())}


def confusion_accuracy(confusion: torch.Tensor) -> float:
    return (confusion.trace() / confusion.sum()).item()


def evaluate(classifier: nn.Module, sets: dict[str, LabeledTensors], *, adabn: bool = False,
             set_std: tuple[float, float] | None = None
             ) -> tuple[dict[str, float], dict[str, dict[str, torch.Tensor]]]:
    """Accuracy on each labeled set, and each set's diagnostics. Two test-time adaptations that
    look at a set's images, each reported apart: `adabn` under "<set>+adabn", and with `set_std`
    (the training pool's pixel mean/std) under "<set>+std": the set moved from its own mean/std,
    computed once over the whole set, to those."""
    diagnostics = {k: diagnose(classifier, v.x, v.y) for k, v in sets.items()}
    accuracies = {k: confusion_accuracy(d["confusion"]) for k, d in diagnostics.items()}
    if adabn:
        accuracies.update({f"{k}+adabn": accuracy(adapt_batchnorm(classifier, v.x), v.x, v.y) for k, v in sets.items()})
    if set_std is not None:
        accuracies.update({f"{k}+std": accuracy(classifier, shift_scale(v.x, own=set_stats(v.x), target=set_std), v.y)
                           for k, v in sets.items()})
    return accuracies, diagnostics


Images = ImageSet | np.ndarray | torch.Tensor | str | Path | Sequence[str | Path]


class Classifier:
    """A run's trained classifier for one method, with the preprocessing it was trained with:
    `sgan.load(run, method=...)`. `predict` / `predict_proba` take an array of images (uint8
    0..255 or floats in [0, 1]; (N, H, W), (N, C, H, W) or (N, H, W, C)), a file or image folder
    path, or a list of image files; images of another size are resized to the run's. Each image's
    answer depends on that image alone, in any batch: the preprocessing is fixed numbers."""

    def __init__(self, run_dir: str | Path, method: str) -> None:
        run = RunFolder(run_dir)
        self.cfg = run.read_config()
        if method not in self.cfg.methods:
            raise SganError(f"{run_dir}: run has no method {method!r} (it has {', '.join(self.cfg.methods)})")
        path = run.evaluated_weights(method, self.cfg)
        info = run.read_weights_info(path)
        self.method, self.image_size = method, self.cfg.image_size
        self.channels, self.num_classes = info.channels, info.num_classes
        self.classes = info.classes  # names of an image folder's classes
        self.input_stats: tuple[float, float] = (info.input_stats[0], info.input_stats[1])  # the pool's, model range
        self.set_stats: tuple[float, float] | None = None  # set by standardized_to: a target set's mean/std
        classifier = build_classifier(dataclasses.replace(self.cfg, channels=self.channels, num_classes=self.num_classes))
        load_weights(classifier, path)
        self.network = evaluated(self.cfg, classifier)  # as the run scored it

    def standardized_to(self, images: "Images") -> "Classifier":
        """This classifier with an explicit test-time adaptation: images are moved from the pixel
        mean/std of `images` (computed once, over all of them) to the training pool's. Those two
        numbers are fixed from then on (`set_stats`), so an image's answer still does not depend
        on the images beside it."""
        adapted = copy.copy(self)
        adapted.set_stats = set_stats(self.inputs(self.images(images)))
        return adapted

    def read(self, path: str | Path) -> ImageSet:
        """A file or image folder, decoded the way the run's training images were."""
        return load_images(str(path), size=self.image_size, channels=self.channels, workers=self.cfg.loader_workers)

    def images(self, images: Images) -> ImageSet:
        if isinstance(images, ImageSet):
            return images
        if isinstance(images, (str, Path)):
            return self.read(images)
        if isinstance(images, (list, tuple)) and all(isinstance(p, (str, Path)) for p in images):
            return read_files([Path(p) for p in images], size=self.image_size, channels=self.channels,
                              workers=self.cfg.loader_workers)
        return ImageSet(images=images_from_array(np.asarray(images), "images"), source="images")

    def inputs(self, images: ImageSet) -> torch.Tensor:
        if images.images.shape[1] != self.channels:
            raise SganError(f"{images.source}: {images.images.shape[1]}-channel images; "
                            f"the run was trained on {self.channels}")
        return Preprocess(self.set_stats, self.input_stats)(prepare_images(images.images, self.image_size))

    def predict_proba(self, images: Images) -> np.ndarray:
        """Softmax over the K classes, (N, K) float32."""
        return predict_logits(self.network, self.inputs(self.images(images))).softmax(dim=1).numpy()

    def predict(self, images: Images) -> np.ndarray:
        """Class indices (N,) int64; `classes` names them for a run trained on an image folder."""
        return self.predict_proba(images).argmax(axis=1)

    def accuracy(self, images: Images) -> float:
        images = self.images(images)
        labels = images.require_labels()
        check_label_range(labels, self.num_classes, images.source)
        return float((self.predict(images) == labels).mean())

    def export_onnx(self, path: str | Path) -> None:
        """An ONNX file that takes pixel values 0..255, float32 (N, C, S, S) at the run's size S,
        and returns class probabilities (N, K): the preprocessing is inside (with its fixed
        numbers, a set standardization's included), so serving it needs no sgan."""
        from .export import export_onnx

        served = nn.Sequential(Scale(), Preprocess(self.set_stats, self.input_stats), self.network, nn.Softmax(dim=1))
        export_onnx(served, path, example=torch.zeros(2, self.channels, self.image_size, self.image_size))


class Scale(nn.Module):
    """Pixels 0..255 (N, C, S, S) -> the model range [-1, 1], as to_model_range."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return to_model_range(pixels)


class Preprocess(nn.Module):
    """Model-range images (N, C, S, S) moved from a set's pixel mean/std `own` to `target` with
    fixed numbers (shift_scale); the identity without a set standardization."""

    def __init__(self, own: tuple[float, float] | None, target: tuple[float, float] | None) -> None:
        super().__init__()
        self.own, self.target = own, target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.own is None or self.target is None:
            return x
        return shift_scale(x, own=self.own, target=self.target)


def load(run: str | Path, *, method: str = "sgan") -> Classifier:
    """The trained classifier of one method of a run folder."""
    return Classifier(run, method)


def write_predictions(out: Path, images: ImageSet, probabilities: np.ndarray, classes: list[str]) -> None:
    """`path,label,confidence` for the images of a folder; label is the class name when known."""
    confidence, index = probabilities.max(axis=1), probabilities.argmax(axis=1)  # (N,), (N,)
    labels = [classes[i] if classes else i for i in index.tolist()]
    atomic_write_text(out, csv_text(["path", "label", "confidence"],
                                    ((p, lab, f"{c:.4f}") for p, lab, c in zip(images.paths, labels, confidence.tolist()))))


def write_submission(out: Path, images: ImageSet, labels: list[int]) -> None:
    """Kaggle's `id,label` CSV; rows are numbered from 0 when the file had no id column."""
    ids = images.ids.tolist() if images.ids is not None else range(len(labels))
    atomic_write_text(out, csv_text(["id", "label"], zip(ids, labels)))
