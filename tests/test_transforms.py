import numpy as np
import torch

from sgan.data.transforms import random_affine, random_stroke, resize, set_stats, shift_scale, to_model_range, to_uint8


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
    v = augmentation(still, 3, torch.Generator().manual_seed(0))(x)
    same = torch.isclose(v, x, atol=1e-5).flatten(1).all(1)
    mirrored = torch.isclose(v, x.flip(-1), atol=1e-5).flatten(1).all(1)
    assert (same ^ mirrored).all()  # each image is itself or its mirror image
    assert 70 < int(mirrored.sum()) < 130
    digits = torch.rand(200, 1, 6, 6) * 2 - 1
    assert torch.allclose(augmentation(still, 1, torch.Generator().manual_seed(0))(digits), digits, atol=1e-5)
    jitter = augmentation(Config(aug_degrees=0, aug_translate=0, aug_scale=0, aug_jitter=0.2), 3,
                          torch.Generator().manual_seed(0))(x)
    assert (jitter.mean(dim=(1, 2, 3)) - x.mean(dim=(1, 2, 3))).abs().max() <= 0.2 + 1e-5  # brightness +- 0.2
    assert not torch.allclose(jitter, v)
    assert torch.equal(augmentation(still, 3, torch.Generator().manual_seed(1))(x),
                       augmentation(still, 3, torch.Generator().manual_seed(1))(x))  # seeded
