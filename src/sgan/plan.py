"""The plan: what exactly a run will do, resolved once from the user's config and the labeled
pool's header, before any image is prepared. Every choice sgan makes for the user is made here
and nowhere else: the model and image size for these images, the channels, the classes, the run
folder, the device and the number format. The run saves the plan's config as its config.json; a
resumed run makes its plan again from that file and gets the same one.

    config -> plan -> data -> methods -> trainer -> run folder -> report
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .config import DEFAULT_SIZE, Config
from .data.imageset import no_labels
from .data.picks import label_numbers, read_rows
from .data.readers import Source, open_source
from .errors import SganError
from .run import default_run_path

if TYPE_CHECKING:
    import torch


def fit_model(cfg: Config, *, channels: int, side: int | None) -> tuple[Config, str | None]:
    """The config with `model` "auto" and an unset `image_size` chosen for images of this many
    channels and this side (None: an image folder, decoded to the chosen size): photos (3
    channels, or larger than 28 px) get the photo network, the rest the digits pair; and the line
    that says so when a photo network was chosen (None: the digits pair, or nothing was chosen)."""
    if cfg.model != "auto" and cfg.image_size is not None:
        return cfg, None
    photo = channels == 3 or (side or 0) > 28
    model = cfg.model if cfg.model != "auto" else "resnet9" if photo else "digits"
    fitted = dataclasses.replace(cfg, model=model, image_size=cfg.image_size or DEFAULT_SIZE[model])
    fitted.check_model()
    if model == "digits":  # the notebook's pair at its size, as ever: nothing to say
        return fitted, None
    net = f"{model} (width {fitted.width})" if model == "resnet9" else model
    images = f"{channels}-channel image folder" if side is None else f"{channels}-channel {side} px images"
    return fitted, f"sgan: {images}: model {net} at {fitted.image_size} px (choose with --model and --image-size)"


def pick_device(name: str) -> "torch.device":
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SganError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def bf16_is_fast(device: "torch.device") -> bool:
    """Whether bf16 autocast speeds training up on `device`: CUDA GPUs with bf16, CPUs with AMX
    tiles (2.4x on the 32 px ResNet18 SGAN step, 1.7x on the 28 px one); CPUs without bf16 units
    emulate it and get slower."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)  # torch's own check; private, so looked up
    return device.type == "cpu" and amx is not None and bool(amx())


def amp_enabled(amp: bool | None, device: "torch.device") -> bool:
    """The config's --amp/--no-amp, else bf16 wherever it is fast."""
    return amp if amp is not None else bf16_is_fast(device)


def picked_classes(cfg: Config, pool: Source) -> int:
    """The classes a filled-in picks.csv's labels need (0 without one): its largest class number
    + 1, or the count of the class names it uses."""
    if not cfg.labels_csv:
        return 0
    labels, classes = label_numbers([label for *_, label in read_rows(cfg.labels_csv)], classes=pool.classes,
                                    numbered=pool.num_classes > 0 and not pool.classes, path=cfg.labels_csv,
                                    source=pool.path)
    return len(classes) or int(labels.max()) + 1


@dataclass(frozen=True)
class Plan:
    """A run, fully resolved: its config has the model, image size, channels, classes, run folder
    and number format (amp) filled in; the device is this machine's."""

    config: Config
    device: str
    chosen: str | None  # the line saying what was chosen for the data, if anything was
    pool: Source = field(compare=False, repr=False)  # the labeled pool it was made for, opened

    def describe(self) -> str:
        """What the run will do and cost, in words (`sgan train --dry-run`)."""
        from .methods import build_method  # torch: only when asked

        cfg = self.config
        lines = [f"data: {cfg.data} ({cfg.num_classes} classes, {cfg.channels}-channel, served at {cfg.image_size} px)",
                 f"model: {cfg.model}" + (f" (width {cfg.width}, stem {cfg.resnet_stem})" if cfg.model != "digits"
                                          else f" (width {cfg.width})"),
                 f"device: {self.device}, {'bfloat16' if cfg.amp else 'float32'} forward passes",
                 f"steps: {cfg.iterations} per method, batch {cfg.batch_size}, validation every {cfg.eval_every}"]
        for name in cfg.methods:
            method = build_method(name, cfg, device=pick_device("cpu"))
            counts = ", ".join(f"{part} {sum(p.numel() for p in m.parameters()):,}"
                               for part, m in method.modules().items())
            lines.append(f"method {name}: {counts} parameters")
        lines.append(f"writes: {cfg.out}")
        return "\n".join(lines)


def make_plan(cfg: Config, pool: Source | None = None, *, labeled: bool = True) -> Plan:
    """The plan of a run of `cfg` on its labeled pool (`pool`: the pool already opened, else it is
    opened here). `labeled=False`: for looking at the pool's images before any label exists
    (suggest-labels), its classes left unknown (None) where nothing names them."""
    pool = pool or open_source(cfg.data)
    channels = pool.channels or cfg.channels or 3
    cfg, chosen = fit_model(cfg, channels=channels, side=pool.side)
    if len(pool.classes) == 1 and labeled:
        raise SganError(f"{pool.path}: labeled folder has one class ({pool.classes[0]}); a classifier needs two or more")
    num_classes = cfg.num_classes or max(pool.num_classes, picked_classes(cfg, pool)) or None
    if num_classes is None and labeled:
        raise no_labels(pool.path)
    device = pick_device(cfg.device)
    cfg = dataclasses.replace(cfg, channels=channels, num_classes=num_classes, out=cfg.out or str(default_run_path()),
                              amp=amp_enabled(cfg.amp, device))  # a resumed run keeps the number format it began with
    return Plan(cfg, str(device), chosen, pool)
