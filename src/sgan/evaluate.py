"""Predictions and accuracy of a classifier on in-memory tensors."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from .checkpoint import atomic_write_text, csv_text, load_weights, read_shapes
from .data import ImageSet, load_images
from .data.prepare import LabeledTensors, check_label_range, prepare_images
from .data.transforms import standardize, to_uint8
from .errors import SganError
from .models import build_classifier
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


def evaluate(classifier: nn.Module, sets: dict[str, LabeledTensors], *, adabn: bool = False
             ) -> tuple[dict[str, float], dict[str, dict[str, torch.Tensor]]]:
    """Accuracy on each labeled set, and with `adabn` also under "<set>+adabn"
    (it looks at the set's images, so it is reported apart); and each set's diagnostics."""
    diagnostics = {k: diagnose(classifier, v.x, v.y) for k, v in sets.items()}
    accuracies = {k: confusion_accuracy(d["confusion"]) for k, d in diagnostics.items()}
    if adabn:
        accuracies.update({f"{k}+adabn": accuracy(adapt_batchnorm(classifier, v.x), v.x, v.y) for k, v in sets.items()})
    return accuracies, diagnostics


class TrainedClassifier:
    """A run's trained classifier for one method, and the preprocessing it was trained with."""

    def __init__(self, run_dir: str | Path, method: str) -> None:
        run = RunFolder(run_dir)
        self.cfg = run.read_config()
        if method not in self.cfg.methods:
            raise SganError(f"{run_dir}: run has no method {method!r} (it has {', '.join(self.cfg.methods)})")
        path = run.weights(method, "classifier")
        shapes = read_shapes(path)
        self.channels, self.num_classes = shapes["channels"], shapes["num_classes"]
        self.classes: list[str] = shapes.get("classes") or []  # names of an image folder's classes
        self.standardize = shapes.get("standardize")  # [mean, std] for "+aug" methods
        self.network = build_classifier(self.cfg, channels=self.channels, num_classes=self.num_classes)
        load_weights(self.network, path)

    def inputs(self, images: ImageSet) -> torch.Tensor:
        if images.images.shape[1] != self.channels:
            raise SganError(f"{images.source}: {images.images.shape[1]}-channel images; "
                            f"the run was trained on {self.channels}")
        x = prepare_images(images.images, self.cfg.image_size)
        if self.standardize:
            x = standardize(x, mean=self.standardize[0], std=self.standardize[1])
        return x

    def read(self, path: str) -> ImageSet:
        """A file or image folder, decoded the way the run's training images were."""
        return load_images(path, size=self.cfg.image_size, channels=self.channels, workers=self.cfg.loader_workers)

    def probabilities(self, images: ImageSet) -> torch.Tensor:
        """Softmax over the K classes (N, K)."""
        return predict_logits(self.network, self.inputs(images)).softmax(dim=1)

    def predict(self, images: ImageSet) -> torch.Tensor:
        """Class indices (N,)."""
        return self.probabilities(images).argmax(dim=1)

    def accuracy(self, images: ImageSet) -> float:
        labels = images.require_labels()
        check_label_range(labels, self.num_classes, images.source)
        return (self.predict(images) == torch.from_numpy(labels)).float().mean().item()


def write_predictions(out: Path, images: ImageSet, probabilities: torch.Tensor, classes: list[str]) -> None:
    """`path,label,confidence` for the images of a folder; label is the class name when known."""
    confidence, index = probabilities.max(dim=1)
    labels = [classes[i] if classes else i for i in index.tolist()]
    atomic_write_text(out, csv_text(["path", "label", "confidence"],
                                    ((p, lab, f"{c:.4f}") for p, lab, c in zip(images.paths, labels, confidence.tolist()))))


def write_submission(out: Path, images: ImageSet, labels: list[int]) -> None:
    """Kaggle's `id,label` CSV; rows are numbered from 0 when the file had no id column."""
    ids = images.ids.tolist() if images.ids is not None else range(len(labels))
    atomic_write_text(out, csv_text(["id", "label"], zip(ids, labels)))
