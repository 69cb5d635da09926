"""report.html: what it holds, rebuilt from the folder alone, and rendered in headless Chromium."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from sgan import train
from sgan.cli import main
from sgan.registry import REGISTRY
from sgan.run import RunFolder
from sgan.data.transforms import set_stats, to_model_range
from sgan.evaluate import confusion_accuracy, diagnose

from conftest import FINISHED, HOLDOUT_IMAGES, chromium_driver, digits28



class FixedLogits(nn.Module):
    """A 'classifier' whose logits are the input's first K pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))  # tells predict_logits the device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :3]


def test_diagnose_counts_confusions_and_ranks_confident_mistakes():
    logits = torch.tensor([[5.0, 0, 0], [0, 3.0, 0], [9.0, 0, 0], [0, 0, 1.0], [0, 2.0, 0]])  # predicted 0 1 0 2 1
    x = torch.zeros(5, 1, 2, 2)
    x.view(5, -1)[:, :3] = logits
    y = torch.tensor([0, 1, 2, 2, 0])
    d = diagnose(FixedLogits(), x, y, worst=5)
    expected = torch.tensor([[1, 1, 0],   # true 0: predicted 0 once, 1 once
                             [0, 1, 0],
                             [1, 0, 1]])  # true 2: predicted 0 (confidently) and 2
    assert torch.equal(d["confusion"], expected)
    assert confusion_accuracy(d["confusion"]) == pytest.approx(3 / 5)
    # two mistakes, the more confident first: image 2 (p = e^9 / (e^9 + 2)), then image 4
    assert d["wrong_index"].tolist() == [2, 4]
    assert d["wrong_true"].tolist() == [2, 0] and d["wrong_predicted"].tolist() == [0, 1]
    assert d["wrong_confidence"][0] == pytest.approx(torch.e ** 9 / (torch.e ** 9 + 2))
    assert d["wrong_images"].dtype == torch.uint8 and d["wrong_images"].shape == (2, 1, 2, 2)


@pytest.fixture
def run_dir(finished_run) -> Path:
    return finished_run


def images_in(html: str) -> list[str]:
    return re.findall(r'<img src="(data:image/png;base64,[^"]+)"', html)


def test_run_report_is_self_contained_and_shows_every_part(run_dir):
    html = (run_dir / "report.html").read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert '<img src="' in html and not re.findall(r'<img src="(?!data:image/png;base64,)', html)
    # curves (1) + the grids of the two generators at steps 6 and 12 (4) + every method's mistakes on val and holdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    wrong = 0
    for method in REGISTRY:
        diagnostics = RunFolder(run_dir).read_diagnostics(method)
        assert list(diagnostics) == ["val", "holdout"]
        for name, d in diagnostics.items():
            assert d["confusion"].sum() == metrics["protocol"]["counts"][name]
            assert confusion_accuracy(d["confusion"]) == pytest.approx(metrics["methods"][method][name])
            wrong += len(d["wrong_images"])
    assert len(images_in(html)) == 1 + 4 + wrong
    for part in ("Results", "Data", "Training curves", "Generated samples", "sgan on holdout",
                 "supervised on val", "Most confidently wrong", "Config", "unlabeled: pool"):
        assert part in html, part
    sets = metrics["protocol"]["sets"]
    assert set(sets) == {"labeled", "unlabeled", "val", "holdout"}
    assert sum(sets["labeled"]["per_class"]) == FINISHED["n_labeled"] and sets["unlabeled"]["per_class"] is None
    # the inverted holdout's shift shows in its pixel statistics (hand computation)
    mean, std = set_stats(to_model_range(255 - digits28()[0][:HOLDOUT_IMAGES]))
    assert sets["holdout"]["pixel_mean"] == pytest.approx(mean, abs=1e-4) and sets["holdout"]["pixel_std"] == pytest.approx(std, abs=1e-4)
    assert sets["holdout"]["pixel_mean"] > 0 > sets["val"]["pixel_mean"]


def test_sgan_report_rebuilds_the_same_page_from_the_folder_alone(run_dir, tmp_path, capsys):
    copy = shutil.copytree(run_dir, tmp_path / "moved")
    original = (copy / "report.html").read_text()
    (copy / "report.html").unlink()
    assert main(["report", str(copy)]) == 0
    assert (copy / "report.html").read_text() == original
    assert "report.html" in capsys.readouterr().out


def test_report_refuses_unfinished_and_foreign_folders(run_dir, tmp_path, capsys):
    unfinished = shutil.copytree(run_dir, tmp_path / "unfinished")
    (unfinished / "metrics.json").unlink()
    assert main(["report", str(unfinished)]) == 2
    assert "run not finished" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run or sweep folder" in capsys.readouterr().err


def test_tensorboard_event_files(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(data="sklearn-digits", n_labeled=30, iterations=6, batch_size=8, eval_every=3, log_every=3,
          methods=["sgan"], tensorboard=True, progress=False, out=str(tmp_path / "run"))
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard" / "sgan")).Reload()
    assert [e.step for e in events.Scalars("loss_d")] == [3, 6]
    assert [e.step for e in events.Scalars("val_accuracy")] == [3, 6]
    assert len(events.Images("samples")) == 2


def render(driver, page: Path, screenshot: Path) -> tuple[list[int], list[dict]]:
    """Loads a page; returns each image's naturalWidth (0: did not decode) and the console errors."""
    driver.get(page.as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    widths = driver.execute_script("return Array.from(document.images).map(i => i.complete ? i.naturalWidth : -1)")
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert driver.save_screenshot(str(screenshot))
    return widths, errors


def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    driver = chromium_driver()
    try:
        # the checks can fail: a page with a broken image and a console error is caught
        broken = tmp_path / "broken.html"
        broken.write_text('<!doctype html><img src="data:image/png;base64,AAAA"><script>console.error("boom")</script>')
        widths, errors = render(driver, broken, tmp_path / "broken.png")
        assert widths == [0] and any("boom" in e["message"] for e in errors)

        widths, errors = render(driver, run_dir / "report.html", tmp_path / "report.png")
        assert len(widths) == len(images_in((run_dir / "report.html").read_text())) and all(w > 0 for w in widths)
        assert errors == []
        assert (tmp_path / "report.png").stat().st_size > 10_000
    finally:
        driver.quit()
