import pytest
import torch

from sgan.config import Config
from sgan.methods import SGAN, build_method, frozen_bn_stats
from sgan.models import DigitClassifier, DigitGenerator, build_classifier
from conftest import planned


@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_finite(channels):
    g, d = DigitGenerator(z_dim=100, channels=channels), DigitClassifier(num_classes=10, channels=channels)
    x = g(torch.randn(5, 100))
    assert x.shape == (5, channels, 28, 28)
    assert x.min() >= -1 and x.max() <= 1
    assert d(x).shape == (5, 10)
    assert d.features(x).shape == (5, 2048)
    assert torch.isfinite(d(x)).all()


def test_digit_classifier_width():
    """w, 2w, 4w channels: the notebook's 32 / 64 / 128 at the default w = 32; the features are 4w x 4 x 4."""
    notebook = [m.out_channels for m in DigitClassifier().modules() if isinstance(m, torch.nn.Conv2d)]
    assert notebook == [32, 64, 128]
    d = DigitClassifier(width=64)
    assert [m.out_channels for m in d.modules() if isinstance(m, torch.nn.Conv2d)] == [64, 128, 256]
    x = torch.randn(3, 1, 28, 28)
    assert d.features(x).shape == (3, 4096) and d(x).shape == (3, 10)
    cfg = Config(model="digits", image_size=28, width=16)
    assert build_classifier(planned(cfg, channels=1, num_classes=10)).features(x).shape == (3, 1024)


@pytest.mark.parametrize("generator_loss,pseudo_label_weight", [("nonsaturating", 0.0), ("feature_matching", 0.0),
                                                                  ("nonsaturating", 1.0)])
def test_sgan_step_reaches_every_parameter(generator_loss, pseudo_label_weight):
    torch.manual_seed(0)
    cfg = Config(generator_loss=generator_loss, pseudo_label_weight=pseudo_label_weight, pseudo_label_threshold=0.05)
    views = []
    method = build_method("sgan", planned(cfg, channels=1, num_classes=10), device=torch.device("cpu"),
                          augment=lambda x: views.append(x) or x.flip(3))
    assert isinstance(method, SGAN)
    before = {k: p.detach().clone() for k, p in
              [*method.classifier.named_parameters(), *(("g." + n, p) for n, p in method.generator.named_parameters())]}
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    out = method.train_step(x, torch.randint(0, 10, (8,)), x)
    expected = {"loss_sup", "loss_real", "loss_fake", "loss_d", "loss_g", "d_real", "d_fake"}
    assert set(out) == (expected | {"loss_pl", "mask_rate"} if pseudo_label_weight else expected)
    assert 0 < out["d_real"] < 1 and 0 < out["d_fake"] < 1
    assert len(views) == (1 if pseudo_label_weight else 0)  # the strong view is of the unlabeled batch
    if pseudo_label_weight:
        assert out["loss_pl"] > 0
    assert all(torch.isfinite(torch.tensor(v)) for v in out.values())
    after = dict([*method.classifier.named_parameters(), *(("g." + n, p) for n, p in method.generator.named_parameters())])
    for name, p in after.items():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert not torch.equal(before[name], p.detach()), f"{name} was not updated"


def test_classifier_returns_its_features_from_the_same_pass():
    torch.manual_seed(0)
    d = DigitClassifier(num_classes=10).eval()
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    logits, features = d(x, with_features=True)
    assert features.shape == (4, 2048) and torch.equal(features, d.features(x)) and torch.equal(logits, d(x))


def test_feature_matching_reuses_the_discriminator_phase_features():
    """Three classifier passes a step: labeled + unlabeled, generated (D phase), generated (G
    phase); the target is the D phase's unlabeled features, not a fourth pass."""
    torch.manual_seed(0)
    method = build_method("sgan", planned(Config(generator_loss="feature_matching", pseudo_label_weight=0.0), channels=1, num_classes=10),
                          device=torch.device("cpu"))
    batches = []
    method.classifier.core.register_forward_hook(lambda module, inputs, output: batches.append(len(output)))
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    method.train_step(x[:3], torch.randint(0, 10, (3,)), x)
    assert batches == [3 + 8, 8, 8]


def test_fake_batch_size_sets_the_generated_batch():
    torch.manual_seed(0)
    method = build_method("sgan", planned(Config(fake_batch_size=3), channels=1, num_classes=10), device=torch.device("cpu"))
    sizes = []
    method.generator.register_forward_hook(lambda module, inputs, output: sizes.append(output.shape))
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    out = method.train_step(x, torch.randint(0, 10, (8,)), x)
    assert sizes == [(3, 1, 28, 28)]  # one generator forward of 3 images serves both phases
    assert all(torch.isfinite(torch.tensor(v)) for v in out.values())
    for name, p in method.generator.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_fixmatch_step_reaches_every_classifier_parameter():
    torch.manual_seed(0)
    views = []
    method = build_method("fixmatch", planned(Config(pseudo_label_threshold=0.05), channels=1, num_classes=10),
                          device=torch.device("cpu"), augment=lambda x: views.append(x) or x.flip(3))
    before = {k: p.detach().clone() for k, p in method.classifier.named_parameters()}
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    out = method.train_step(x, torch.randint(0, 10, (8,)), x)
    assert set(out) == {"loss_sup", "loss_pl", "mask_rate", "loss"} and out["loss_pl"] > 0
    assert len(views) == 3  # the unlabeled and labeled batches' views, then the strong view
    assert all(torch.isfinite(torch.tensor(v)) for v in out.values())
    for name, p in method.classifier.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert not torch.equal(before[name], p.detach()), f"{name} was not updated"


def test_supervised_step_updates_every_classifier_parameter():
    torch.manual_seed(0)
    method = build_method("supervised", planned(Config(), channels=1, num_classes=10), device=torch.device("cpu"))
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    method.train_step(x, torch.randint(0, 10, (8,)), x)
    for name, p in method.classifier.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_frozen_bn_stats_normalises_by_batch_but_keeps_running_stats():
    d = DigitClassifier().train()
    d(torch.randn(16, 1, 28, 28))
    stats = {k: v.clone() for k, v in d.state_dict().items() if "running" in k}
    with frozen_bn_stats(d):
        d(torch.randn(16, 1, 28, 28) * 5 + 3)
    for k, v in stats.items():
        assert torch.equal(d.state_dict()[k], v), k
    d(torch.randn(16, 1, 28, 28) * 5 + 3)  # outside the context the stats move again
    assert not all(torch.equal(d.state_dict()[k], v) for k, v in stats.items())


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")
def test_cosine_schedule_halves_at_midpoint_and_ends_at_zero():
    from sgan.trainer import lr_schedules

    cfg = Config(lr=1e-3, lr_schedule="cosine", iterations=10)
    method = build_method("sgan", planned(cfg, channels=1, num_classes=10), device=torch.device("cpu"))
    schedules = lr_schedules(method, cfg)
    assert len(schedules) == 2  # classifier and generator
    lrs = []
    for _ in range(10):
        for s in schedules:
            s.step()
        lrs.append([opt.param_groups[0]["lr"] for opt in method.optimizers()])
    assert lrs[4] == pytest.approx([5e-4, 5e-4])  # cos(pi/2): half way
    assert lrs[-1] == pytest.approx([0.0, 0.0], abs=1e-12)
    assert lr_schedules(method, Config(lr_schedule="constant")) == []


def test_split_bn_takes_running_statistics_from_labeled_images_only():
    torch.manual_seed(0)
    cfg = Config(split_bn=True, input_noise=0.0, amp=False)  # exact comparison with the float32 reference
    method = build_method("sgan", planned(cfg, channels=1, num_classes=10), device=torch.device("cpu"))
    reference = DigitClassifier(num_classes=10)
    reference.load_state_dict(method.classifier.state_dict())
    x_lb, x_ulb = torch.rand(8, 1, 28, 28) * 2 - 1, torch.rand(8, 1, 28, 28) - 1  # different distributions
    reference.train()(x_lb)  # what the labeled batch alone does to the running statistics
    method.train_step(x_lb, torch.randint(0, 10, (8,)), x_ulb)
    bn_ref = [m for m in reference.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    bn = [m for m in method.classifier.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for a, b in zip(bn_ref, bn):
        torch.testing.assert_close(b.running_mean, a.running_mean)
        torch.testing.assert_close(b.running_var, a.running_var)


def test_channels_last_path_matches_the_plain_one():
    x_lb, y_lb = torch.rand(16, 1, 28, 28) * 2 - 1, torch.randint(0, 10, (16,))
    x_ulb = torch.rand(16, 1, 28, 28) * 2 - 1
    runs = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        cfg = Config(channels_last=channels_last, input_noise=0.0, amp=False)  # float32 tolerances
        method = build_method("sgan", planned(cfg, channels=1, num_classes=10), device=torch.device("cpu"))
        runs.append([method.train_step(x_lb, y_lb, x_ulb) for _ in range(3)])
        assert method.generator.net[0].weight.is_contiguous(memory_format=torch.channels_last) == channels_last
    for plain, fast in zip(*runs):
        assert fast == pytest.approx(plain, rel=1e-3, abs=1e-4)


@pytest.mark.parametrize("stem,side", [("small", 32), ("imagenet", 16)])
def test_resnet18_stems_at_64_px(stem, side):
    from sgan.models import ResNet18Classifier

    d = ResNet18Classifier(num_classes=2, image_size=64, stem=stem)
    x = torch.randn(2, 3, 64, 64)
    stages_in = d.body.maxpool(d.body.relu(d.body.bn1(d.body.conv1(x))))
    assert stages_in.shape == (2, 64, side, side)  # where the residual stages start
    assert d(x).shape == (2, 2) and d.features(x).shape == (2, 512)


def test_dropout_zeroes_a_fraction_p_and_keeps_the_mean():
    from sgan.models.digits import Dropout

    torch.manual_seed(0)
    drop, x = Dropout(0.5), torch.ones(200, 2048)
    y = drop.train()(x)
    assert set(y.unique().tolist()) == {0.0, 2.0}  # zeroed, or scaled by 1 / (1 - p)
    assert (y == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)
    assert y.mean().item() == pytest.approx(1.0, abs=0.02)
    assert torch.equal(drop.eval()(x), x)


@pytest.mark.parametrize("size,stem,last_side", [(32, "small", 4), (64, "small", 4), (64, "patch", 4),
                                                 (128, "patch", 4), (64, "strided", 4), (128, "strided", 4)])
def test_resnet9_shapes_resolution_and_every_parameter_gets_a_gradient(size, stem, last_side):
    from sgan.models import ResNet9Classifier

    torch.manual_seed(0)
    d = ResNet9Classifier(num_classes=2, image_size=size, width=8, input_noise=0.3, stem=stem)
    x = torch.randn(4, 3, size, size)
    last = d.body[:-2](x)  # before global pooling: the last stage keeps a 4x4 map at either size
    assert last.shape == (4, 64, last_side, last_side)
    assert d.features(x).shape == (4, 64) and d(x).shape == (4, 2)
    d(x).logsumexp(1).mean().backward()
    for name, p in d.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_resnet9_sgan_step_from_the_config_and_its_size_check():
    from sgan.errors import SganError

    cfg = Config(model="resnet9", image_size=32, width=8, generator_loss="feature_matching", amp=False)
    method = build_method("sgan+aug", planned(cfg.validate(), channels=3, num_classes=2), device=torch.device("cpu"))
    x = torch.rand(8, 3, 32, 32) * 2 - 1
    logged = method.train_step(x, torch.randint(0, 2, (8,)), x.flip(0))
    assert all(torch.isfinite(torch.tensor(v)) for v in logged.values()) and {"d_real", "d_fake", "mask_rate"} <= set(logged)
    with pytest.raises(SganError, match="resnet9.*image_size"):
        Config(model="resnet9", image_size=96).validate()


def test_resnet9_patch_stem_brings_large_images_to_32_px():
    """The patch stem is one k x k stride-k convolution (k = size / 32): the body's first layer
    sees 32 x 32 at 64 and 128 px, so the body costs what it costs at 32 px."""
    from sgan.models import ResNet9Classifier

    for size, k in ((64, 2), (128, 4)):
        d = ResNet9Classifier(image_size=size, width=8, stem="patch")
        conv = d.body[0][0]
        assert (conv.kernel_size, conv.stride) == ((k, k), (k, k))
        assert d.body[0](torch.randn(2, 3, size, size)).shape == (2, 8, 32, 32)
    for size, halvings in ((64, 1), (128, 2)):  # the strided stem: 3x3 stride-2 convolutions down to 32 px
        d = ResNet9Classifier(image_size=size, width=8, stem="strided")
        convs = [m for m in d.body[0] if isinstance(m, torch.nn.Conv2d)]
        assert [(c.kernel_size, c.stride) for c in convs] == [((3, 3), (2, 2))] * halvings
        assert d.body[0](torch.randn(2, 3, size, size)).shape == (2, 8, 32, 32)
    with pytest.raises(ValueError, match="patch"):
        ResNet9Classifier(image_size=128, stem="small")
    cfg = Config(model="resnet9", image_size=128, resnet_stem="patch", width=8).validate()
    assert build_classifier(planned(cfg, channels=3, num_classes=2))(torch.randn(2, 3, 128, 128)).shape == (2, 2)


def test_diff_augment_views_generated_images_as_real_ones_and_the_generator_learns_through_them():
    """DiffAugment: the augmentation the real batches get is applied to the generated batch
    too (a third call, on a tensor that carries the generator's graph), the discriminator sees
    that view in both phases, and every generator parameter gets a gradient through it."""
    torch.manual_seed(0)
    cfg = Config(model="resnet9", image_size=32, width=8, generator_loss="feature_matching", pseudo_label_weight=0.0,
                 diff_augment=True, methods=["sgan+aug"], amp=False).validate()
    seen = []
    method = build_method("sgan+aug", planned(cfg, channels=3, num_classes=2), device=torch.device("cpu"),
                          augment=lambda x: seen.append(x) or x.flip(3) * 0.5)
    inputs = []
    method.classifier.noise.register_forward_pre_hook(lambda m, args: inputs.append(args[0]))  # every pass's input
    x = torch.rand(8, 3, 32, 32) * 2 - 1
    out = method.train_step(x, torch.randint(0, 2, (8,)), x.flip(0))
    assert len(seen) == 3 and seen[2].requires_grad and not seen[0].requires_grad  # unlabeled, labeled, generated
    generated_view = seen[2].detach().flip(3) * 0.5
    d_phase, g_phase = inputs[1], inputs[2]  # after the labeled + unlabeled pass
    assert torch.allclose(d_phase, generated_view) and torch.allclose(g_phase.detach(), generated_view)
    assert all(torch.isfinite(torch.tensor(v)) for v in out.values())
    for name, p in method.generator.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_pull_away_term_joins_the_generator_loss():
    """With a pull-away weight the G phase adds the term on the generated batch's features: it
    is logged, lies in [0, 1], and the generator's loss is the plain one plus weight x term."""
    torch.manual_seed(0)
    cfg = Config(model="resnet9", image_size=32, width=8, generator_loss="feature_matching", pseudo_label_weight=0.0,
                 methods=["sgan"], amp=False)
    plain = build_method("sgan", planned(cfg.validate(), channels=3, num_classes=2), device=torch.device("cpu"))
    torch.manual_seed(0)
    pulled = build_method("sgan", planned(Config(**{**cfg.to_dict(), "pull_away_weight": 2.0}).validate(), channels=3,
                                          num_classes=2), device=torch.device("cpu"))
    x = torch.rand(8, 3, 32, 32) * 2 - 1
    y = torch.randint(0, 2, (8,))
    torch.manual_seed(1)
    out_plain = plain.train_step(x, y, x.flip(0))
    torch.manual_seed(1)
    out = pulled.train_step(x, y, x.flip(0))
    assert "loss_pt" in out and "loss_pt" not in out_plain and 0 <= out["loss_pt"] <= 1
    assert out["loss_g"] == pytest.approx(out_plain["loss_g"] + 2.0 * out["loss_pt"], rel=1e-4)
    for name, p in pulled.generator.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_generator_width_sets_the_photo_generators_channels():
    from sgan.models import build_generator

    for width in (16, 64):
        g = build_generator(planned(Config(model="resnet9", image_size=32, generator_width=width).validate(), channels=3))
        widths = [m.out_channels for m in g.net if isinstance(m, torch.nn.ConvTranspose2d)]
        assert widths == [2 * width, width, 3]  # 4 -> 8 -> 16 -> 32 px
        assert g(torch.randn(2, 100)).shape == (2, 3, 32, 32)


def test_generator_width_sets_the_digit_generators_channels():
    from sgan.models import build_generator

    for width, notebook in ((64, [128, 64, 1]), (16, [32, 16, 1])):  # 64: the Keras notebook's 256 -> 128 -> 64
        g = build_generator(planned(Config(model="digits", image_size=28, generator_width=width).validate(), channels=1))
        widths = [m.out_channels for m in g.net if isinstance(m, torch.nn.ConvTranspose2d)]
        assert widths == notebook and g.project.out_features == 7 * 7 * 4 * width
        assert g(torch.randn(2, 100)).shape == (2, 1, 28, 28)


def test_flip_tta_averages_each_image_with_its_mirror():
    from torch import nn

    from sgan.models import FlipAveraged

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))  # sees where each pixel is: not mirror-symmetric
    x = torch.randn(6, 3, 4, 4)
    assert not torch.allclose(net(x).softmax(1), net(x.flip(3)).softmax(1), atol=1e-3)  # so the test can fail
    tta = FlipAveraged(net)
    expected = ((net(x).softmax(1) + net(x.flip(3)).softmax(1)) / 2)
    assert torch.allclose(tta(x).softmax(1), expected, atol=1e-6) and torch.allclose(tta(x).exp(), expected, atol=1e-6)
    assert torch.allclose(tta(x.flip(3)), tta(x), atol=1e-6)  # a mirrored photo gets the same answer


def test_a_flip_tta_run_scores_and_serves_the_flip_average(tmp_path):
    import numpy as np
    from PIL import Image

    from sgan import load, train
    from sgan.models import FlipAveraged

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / "pool" / c).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "pool" / c / f"{i}.png")
    train(data=str(tmp_path / "pool"), methods=["supervised"], tta_flip=True, width=4, iterations=2, batch_size=4,
          n_labeled=4, val_per_class=3, loader_workers=0, progress=False, out=str(tmp_path / "run"))
    served = load(tmp_path / "run", method="supervised")
    assert isinstance(served.network, FlipAveraged)
    images = served.read(tmp_path / "pool").images  # (N, 3, 32, 32) uint8
    assert np.allclose(served.predict_proba(images), served.predict_proba(images[..., ::-1].copy()), atol=1e-5)
