"""The trained model from Python (`sgan.load(...).predict`) and served without sgan (ONNX)."""

from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from PIL import Image

import sgan
from sgan.cli import main
from sgan.data.transforms import resize, set_stats
from sgan.registry import REGISTRY

from conftest import digits28


@pytest.fixture
def run(finished_run) -> Path:
    return finished_run


def test_predict_takes_arrays_in_every_layout_paths_and_folders(run, digits_csv, tmp_path):
    clf = sgan.load(run, method="sgan")
    images, _ = digits28(40)  # (40, 1, 28, 28) uint8
    proba = clf.predict_proba(images)
    assert proba.shape == (40, 10) and proba.dtype == np.float32
    assert np.allclose(proba.sum(axis=1), 1, atol=1e-5) and np.isfinite(proba).all()
    labels = clf.predict(images)
    assert labels.shape == (40,) and (labels == proba.argmax(axis=1)).all()
    assert np.array_equal(clf.predict(images[:, 0]), labels)  # (N, H, W)
    assert np.array_equal(clf.predict(images.transpose(0, 2, 3, 1)), labels)  # (N, H, W, C)
    assert np.allclose(clf.predict_proba(images / 255.0), proba, atol=1e-6)  # floats in [0, 1]
    small = resize(images, 14)  # another size is resized to the run's
    assert clf.predict_proba(small).shape == (40, 10)
    # the CSV it came from, a folder of PNGs and a list of files give the same answers as the arrays
    every = digits28()[0]
    assert np.array_equal(clf.predict(str(digits_csv)), clf.predict(every))
    folder = tmp_path / "pngs"
    folder.mkdir()
    files = []
    for i, image in enumerate(images[:12, 0]):
        Image.fromarray(image).save(folder / f"{i:02d}.png")
        files.append(folder / f"{i:02d}.png")
    assert np.array_equal(clf.predict(folder), labels[:12])
    assert np.array_equal(clf.predict([str(f) for f in files[::-1]]), labels[:12][::-1])


@pytest.mark.parametrize("bad, message", [
    (np.zeros((3, 2, 28, 28), np.uint8), "2 channels"),
    (np.array([["a"]]), "must hold numbers"),
    (np.full((2, 28, 28), 300.0), "integers in 0..255"),
    ("nowhere.csv", "file not found"),
    (["nowhere.png"], "file not found"),
])
def test_bad_images_are_one_clear_error(run, bad, message):
    with pytest.raises(sgan.SganError, match=message):
        sgan.load(run, method="sgan").predict(bad)


def test_load_names_the_methods_a_run_has(run):
    with pytest.raises(sgan.SganError, match="it has supervised, conventional, fixmatch, sgan, sgan[+]aug"):
        sgan.load(run, method="nope")


def alone_and_in_a_batch(proba) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of 37 images as one batch (37, K), and of each image alone, stacked (37, K)."""
    images = digits28(37)[0]
    return proba(images), np.concatenate([proba(images[i:i + 1]) for i in range(len(images))])


@pytest.mark.parametrize("method", list(REGISTRY))
def test_an_image_gets_the_same_answer_alone_as_in_a_batch(run, method):
    batch, alone = alone_and_in_a_batch(sgan.load(run, method=method).predict_proba)
    assert np.abs(alone - batch).max() < 1e-5


@pytest.mark.parametrize("method", list(REGISTRY))
def test_onnx_export_predicts_as_torch_and_each_image_alone_as_in_a_batch(run, method, tmp_path):
    clf = sgan.load(run, method=method)
    out = tmp_path / f"{method}.onnx"
    assert main(["export", str(run), "--method", method, "--out", str(out)]) == 0
    session = onnxruntime.InferenceSession(str(out))

    def served(batch: np.ndarray) -> np.ndarray:
        return session.run(["probabilities"], {"images": batch.astype(np.float32)})[0]

    batch, alone = alone_and_in_a_batch(served)  # the batch size is free
    assert batch.shape == (37, 10) and np.abs(alone - batch).max() < 1e-5
    images = digits28(37)[0]
    assert np.abs(batch - clf.predict_proba(images)).max() < 1e-4
    assert (batch.argmax(axis=1) == clf.predict(images)).all()


def test_set_standardization_is_explicit_fixed_and_baked_into_onnx(run, tmp_path, capsys):
    clf = sgan.load(run, method="conventional")
    images = digits28(60)[0]
    darker = (images * 0.5).astype(np.uint8)  # another pen or scanner: the same digits, half as bright
    adapted = clf.standardized_to(darker)
    x = clf.inputs(clf.images(darker))
    assert adapted.set_stats == pytest.approx(set_stats(x))  # computed once, over the whole set
    assert set_stats(adapted.inputs(adapted.images(darker))) == pytest.approx(clf.input_stats, abs=1e-4)
    batch, alone = alone_and_in_a_batch(adapted.predict_proba)  # fixed numbers: still per image
    assert np.abs(alone - batch).max() < 1e-5
    assert np.abs(clf.predict_proba(images) - adapted.predict_proba(images)).max() > 1e-3  # it does move them
    folder = tmp_path / "dark.npz"
    np.savez(folder, x=darker, y=digits28(60)[1])
    out = tmp_path / "adapted.onnx"
    assert main(["export", str(run), "--method", "conventional", "--out", str(out), "--standardize-to", str(folder)]) == 0
    assert "standardizing from the images' pixel mean" in capsys.readouterr().err
    session = onnxruntime.InferenceSession(str(out))
    served = session.run(["probabilities"], {"images": images[:9].astype(np.float32)})[0]
    assert np.abs(served - adapted.predict_proba(images[:9])).max() < 1e-4
    assert main(["eval", str(run), "--data", str(folder), "--method", "conventional", "--standardize"]) == 0
    table = capsys.readouterr().out
    assert "standardized to the pool" in table
    assert f"{adapted.accuracy(str(folder)):.4f}" in table


def test_export_refuses_what_is_not_a_regular_file(run, capsys):
    assert main(["export", str(run), "--out", "/dev/null"]) == 2
    assert "not a regular file" in capsys.readouterr().err
