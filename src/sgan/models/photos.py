"""Photos: torchvision's ResNet18 (from scratch) as the K-class discriminator, and a DCGAN
generator (Radford et al. 2016) sized to the image, 32 to 224 px."""

from __future__ import annotations

import torch
from torch import nn

from .classifier import ClassifierNet
from .digits import GaussianNoise


def start_side(image_size: int) -> tuple[int, int]:
    """(first feature map side, number of 2x upsamplings): 32 -> (4, 3), 64 -> (4, 4),
    96 -> (6, 4), 128 -> (4, 5), 224 -> (7, 5)."""
    side, ups = image_size, 0
    while side > 7:
        side, ups = side // 2, ups + 1
    if side << ups != image_size or side < 3:
        raise ValueError(f"image size {image_size} is not 3..7 times a power of two")
    return side, ups


class DCGANGenerator(nn.Module):
    """z (B, z_dim) -> images (B, C, S, S) in [-1, 1]: a projection to (ngf * 2^(n-1), s, s), then n
    stride-2 transposed convolutions, each halving the width and doubling the side."""

    def __init__(self, *, z_dim: int = 100, channels: int = 3, image_size: int = 64, ngf: int = 64) -> None:
        super().__init__()
        self.z_dim = z_dim
        side, ups = start_side(image_size)
        width = min(ngf * 2 ** (ups - 1), 512)
        self.start = (width, side)
        self.project = nn.Sequential(nn.Linear(z_dim, width * side * side, bias=False),
                                     nn.Unflatten(1, (width, side, side)), nn.BatchNorm2d(width), nn.ReLU(True))
        layers: list[nn.Module] = []
        for i in range(ups - 1):
            out = min(ngf * 2 ** (ups - 2 - i), 512)
            layers += [nn.ConvTranspose2d(width, out, 4, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(out), nn.ReLU(True)]
            width = out
        layers += [nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.project(z))  # (B, C, S, S)


class ResNet18Classifier(ClassifierNet):
    """torchvision's resnet18, no pretrained weights, K outputs. With the "small" stem, below
    128 px the 7x7 stride-2 stem becomes a 3x3 stride-1 convolution (and below 64 px the max-pool
    goes too), so a 64 px photo reaches the residual stages at 32 px instead of 16. The
    "imagenet" stem keeps torchvision's (a quarter of the side at the residual stages at any
    size: about 4x fewer operations at 64 px)."""

    def __init__(self, *, num_classes: int = 2, channels: int = 3, image_size: int = 64,
                 input_noise: float = 0.0, stem: str = "small") -> None:
        from torchvision.models import resnet18  # here: importing torchvision costs every process a second

        super().__init__()
        net = resnet18(weights=None, num_classes=num_classes)
        small = stem == "small" and image_size < 128
        if channels != 3 or small:
            net.conv1 = nn.Conv2d(channels, 64, 3 if small else 7, stride=1 if small else 2,
                                  padding=1 if small else 3, bias=False)
            if small and image_size < 64:
                net.maxpool = nn.Identity()
        self.noise = GaussianNoise(input_noise)
        self.head = net.fc
        net.fc = nn.Identity()
        self.body = net

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.noise(x))  # (B, 512), after global average pooling


def conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True))


class Residual(nn.Module):
    """x + two 3x3 conv-BN-ReLU layers of the same width."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(width, width), conv_bn(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9Classifier(ClassifierNet):
    """The ResNet-9 of "How to train your ResNet" (Page 2018), CIFAR-10 in minutes, at a chosen
    width: a stem, then three stages (conv, 2x max-pool; residual blocks after the first and the
    last), global average pooling, a linear head. Widths w, 2w, 4w, 8w (w = 64 is the original,
    about 0.45 GMAC per 32 px image; w = 16 about 28 MMAC, the cost of the imagenet-stem ResNet18
    at 32 px). No early stride at 32 px: the last stage sees 4x4 (the imagenet-stem ResNet18
    1x1). Larger images reach the stages at 32 px by their stem: "small", a 3x3 convolution at
    full resolution and a 2x max-pool (64 px only); "patch", a k x k stride-k convolution with
    k = image_size / 32 (ViT's patch embedding), so that a 128 px photo costs the body what a
    32 px one does and the stem about 1% more; "strided", log2(k) 3x3 stride-2 convolutions
    (each with BatchNorm and ReLU), which see across patch borders, about 14% more at 128 px."""

    def __init__(self, *, num_classes: int = 2, channels: int = 3, image_size: int = 32, width: int = 32,
                 input_noise: float = 0.0, stem: str = "small") -> None:
        super().__init__()
        w = width
        self.noise = GaussianNoise(input_noise)
        k = image_size // 32
        if image_size == 32:
            first: list[nn.Module] = [conv_bn(channels, w)]
        elif stem == "patch" and image_size in (64, 128):
            first = [nn.Sequential(nn.Conv2d(channels, w, k, stride=k, bias=False), nn.BatchNorm2d(w), nn.ReLU(True))]
        elif stem == "strided" and image_size in (64, 128):  # log2(k) 3x3 stride-2 convolutions, each halving the side
            halvings = k.bit_length() - 1
            first = [nn.Sequential(*(layer for i in range(halvings) for layer in (
                nn.Conv2d(channels if i == 0 else w, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w),
                nn.ReLU(True))))]
        elif stem == "small" and image_size == 64:
            first = [conv_bn(channels, w), nn.MaxPool2d(2)]
        else:
            raise ValueError(f"resnet9 takes image sizes 32 and 64 with the small stem, and 32, 64, 128 with the "
                             f"patch or strided stem, got {image_size} with {stem!r}")
        self.body = nn.Sequential(
            *first,
            conv_bn(w, 2 * w), nn.MaxPool2d(2), Residual(2 * w),
            conv_bn(2 * w, 4 * w), nn.MaxPool2d(2),
            conv_bn(4 * w, 8 * w), nn.MaxPool2d(2), Residual(8 * w),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(8 * w, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.noise(x))  # (B, 8w)
