import numpy as np
import torch

from sgan.data.transforms import random_affine, random_stroke, resize, set_stats, shift_scale, to_model_range, to_uint8
from conftest import planned


def test_model_range_roundtrip():
    u8 = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    x = to_model_range(u8)
    assert x.min() == -1 and x.max() == 1
    assert torch.equal(to_uint8(x), u8)


def test_resize_keeps_uint8_and_is_noop_at_size():
    img = np.random.default_rng(0).integers(0, 256, (2, 1, 8, 8), dtype=np.uint8)
    assert resize(img, 8) is img
    out = resize(img, 28)
    assert out.shape == (2, 1, 28, 28) and out.dtype == np.uint8


def test_set_standardization_matches_hand_computation():
    x = torch.tensor([0.0, 2.0, 4.0, 6.0]).view(1, 1, 2, 2)  # mean 3, sample std sqrt(20/3)
    out = shift_scale(x, own=set_stats(x), target=(1.0, 2.0))
    expected = (x - 3.0) / (20 / 3) ** 0.5 * 2.0 + 1.0
    assert torch.allclose(out, expected)
    mean, std = set_stats(out)
    assert abs(mean - 1.0) < 1e-6 and abs(std - 2.0) < 1e-6


def test_random_affine_changes_each_image_differently_and_is_seeded():
    x = torch.zeros(4, 1, 28, 28)
    x[:, :, 10:18, 12:16] = 1.0  # the same bar in every image
    a = random_affine(x, degrees=15, translate=0.1, scale=0.1, generator=torch.Generator().manual_seed(0))
    b = random_affine(x, degrees=15, translate=0.1, scale=0.1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert a.shape == x.shape and not torch.equal(a, x)
    assert not torch.equal(a[0], a[1])  # per-image parameters
    identity = random_affine(x, degrees=0, translate=0, scale=0)
    assert torch.allclose(identity, x, atol=1e-5)


def test_random_stroke_blends_each_image_towards_a_thicker_or_thinner_pen():
    x = -torch.ones(64, 1, 12, 12)
    x[:, :, 3:9, 5:7] = 1.0  # a bright bar 6 x 2 px on a dark ground
    thick = -torch.ones(1, 1, 12, 12)
    thick[:, :, 2:10, 4:8] = 1.0  # a 3x3 max filter: one more pixel all round
    thin = -torch.ones(1, 1, 12, 12)  # a 3x3 min filter wipes a 2 px bar out
    share = torch.rand(64, generator=torch.Generator().manual_seed(3)) * 2 - 1  # the draws random_stroke makes
    out = random_stroke(x, 0.5, generator=torch.Generator().manual_seed(3))
    for i in range(64):
        target = thick if share[i] > 0 else thin
        assert torch.allclose(out[i], (x[i] + 0.5 * share[i].abs() * (target[0] - x[i])), atol=1e-6)
    assert (share > 0).any() and (share < 0).any()  # both pens drawn
    assert torch.equal(random_stroke(x, 0.0), x)
    assert out.min() >= -1 and out.max() <= 1


def test_photo_views_mirror_about_half_the_batch_and_digit_views_never_do():
    from sgan.config import Config
    from sgan.methods import augmentation

    still = Config(aug_degrees=0, aug_translate=0, aug_scale=0, aug_jitter=0)  # only the flip left
    x = torch.rand(200, 3, 6, 6) * 2 - 1
    v = augmentation(planned(still, channels=3), torch.Generator().manual_seed(0))(x)
    same = torch.isclose(v, x, atol=1e-5).flatten(1).all(1)
    mirrored = torch.isclose(v, x.flip(-1), atol=1e-5).flatten(1).all(1)
    assert (same ^ mirrored).all()  # each image is itself or its mirror image
    assert 70 < int(mirrored.sum()) < 130
    digits = torch.rand(200, 1, 6, 6) * 2 - 1
    assert torch.allclose(augmentation(planned(still, channels=1), torch.Generator().manual_seed(0))(digits), digits, atol=1e-5)
    jitter = augmentation(planned(Config(aug_degrees=0, aug_translate=0, aug_scale=0, aug_jitter=0.2), channels=3),
                          torch.Generator().manual_seed(0))(x)
    assert (jitter.mean(dim=(1, 2, 3)) - x.mean(dim=(1, 2, 3))).abs().max() <= 0.2 + 1e-5  # brightness +- 0.2
    assert not torch.allclose(jitter, v)
    assert torch.equal(augmentation(planned(still, channels=3), torch.Generator().manual_seed(1))(x),
                       augmentation(planned(still, channels=3), torch.Generator().manual_seed(1))(x))  # seeded


def test_random_cutout_greys_one_square_per_image_at_a_seeded_place():
    from sgan.data.transforms import random_cutout

    x = torch.ones(64, 3, 32, 32)
    out = random_cutout(x, 0.5, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.equal(out, random_cutout(x, 0.5, torch.Generator().manual_seed(0)))
    holes = out[:, 0] == 0  # (B, H, W), the same in every channel
    assert torch.equal(holes[:, None].expand_as(out), out == 0)
    for hole in holes:  # one axis-aligned rectangle, at most 16 x 16, cut by the edges only
        rows, cols = hole.any(1).nonzero().flatten(), hole.any(0).nonzero().flatten()
        assert len(rows) <= 16 and len(cols) <= 16 and len(rows) > 0
        assert hole.sum() == len(rows) * len(cols)
        assert rows.max() - rows.min() + 1 == len(rows) and cols.max() - cols.min() + 1 == len(cols)
        inside = rows.min() > 0 and rows.max() < 31 and cols.min() > 0 and cols.max() < 31
        assert not inside or (len(rows), len(cols)) == (16, 16)  # a square wholly inside is the full size
    assert 0.15 < holes.float().mean() < 0.25  # a quarter of the area where wholly inside, less at the edges
    assert torch.equal(random_cutout(x, 0.0), x)


def test_strong_cutout_reaches_the_pseudo_label_view_only():
    from sgan.config import Config
    from sgan.methods import build_method

    cfg = Config(model="resnet9", image_size=32, channels=3, strong_cutout=0.5, aug_degrees=0, aug_translate=0,
                 aug_scale=0, aug_jitter=0)
    method = build_method("sgan+aug", planned(cfg, channels=3, num_classes=2), device=torch.device("cpu"))
    x = torch.full((8, 3, 32, 32), 0.5)
    strong = method.pseudo.strong_augment(x)
    assert (strong == 0).any() and ((strong == 0) | (strong == 0.5)).all()
    assert not (method.augment(x) == 0).any()  # the labeled and real/fake views keep every pixel
