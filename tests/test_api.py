"""The trained model from Python (`sgan.load(...).predict`) and served without sgan (ONNX)."""

from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from PIL import Image

import sgan
from sgan.cli import main
from sgan.data.transforms import resize

from conftest import digits28

TINY = dict(iterations=30, batch_size=16, eval_every=30, log_every=10, progress=False, n_labeled=50)


@pytest.fixture(scope="module")
def run(tmp_path_factory, digits_csv) -> Path:
    out = tmp_path_factory.mktemp("api") / "run"
    sgan.train(data=str(digits_csv), methods=["supervised", "sgan", "conventional"], out=str(out), **TINY)
    return out


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
    with pytest.raises(sgan.SganError, match="it has supervised, sgan, conventional"):
        sgan.load(run, method="sgan+aug")


@pytest.mark.parametrize("method", ["sgan", "conventional"])  # conventional standardizes inside the graph
def test_onnx_export_predicts_as_torch(run, method, tmp_path):
    clf = sgan.load(run, method=method)
    out = tmp_path / f"{method}.onnx"
    assert main(["export", str(run), "--method", method, "--out", str(out)]) == 0
    session = onnxruntime.InferenceSession(str(out))
    images, _ = digits28(37)
    for batch in (images[:5], images):  # the batch size is free
        served = session.run(["probabilities"], {"images": batch.astype(np.float32)})[0]
        assert served.shape == (len(batch), 10)
        assert np.abs(served - clf.predict_proba(batch)).max() < 1e-4
        assert (served.argmax(axis=1) == clf.predict(batch)).all()


def test_export_refuses_what_is_not_a_regular_file(run, capsys):
    assert main(["export", str(run), "--out", "/dev/null"]) == 2
    assert "not a regular file" in capsys.readouterr().err
