import gzip

import numpy as np
import pytest

from conftest import digits28, write_idx, write_kaggle_csv
from sgan import SganError, load_images


def test_kaggle_csv_with_labels(digits_csv):
    s = load_images(str(digits_csv))
    images, labels = digits28()
    assert s.images.shape == (1797, 1, 28, 28) and s.images.dtype == np.uint8
    assert np.array_equal(s.images, images) and np.array_equal(s.labels, labels)
    assert s.ids is None


def test_kaggle_csv_with_ids_keeps_ids(test_csv):
    s = load_images(str(test_csv))
    assert s.labels is None
    assert s.ids.tolist() == list(range(1000, 1050))


def test_csv_of_pixels_only_and_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3))  # H, W, C row-major
    path = write_kaggle_csv(tmp_path / "rgb.csv", rgb, None)
    s = load_images(str(path))
    assert s.images.shape == (4, 3, 8, 8)
    assert np.array_equal(s.images, rgb.transpose(0, 3, 1, 2))


@pytest.mark.parametrize("suffix", ["-idx3-ubyte", "-idx3-ubyte.gz"])
def test_idx_finds_labels_beside_images(tmp_path, suffix):
    images, labels = digits28(30)
    write_idx(tmp_path / f"X_train{suffix}", images[:, 0])
    write_idx(tmp_path / f"y_train{suffix.replace('idx3', 'idx1')}", labels)
    s = load_images(str(tmp_path / f"X_train{suffix}"))
    assert np.array_equal(s.images, images) and np.array_equal(s.labels, labels)


def test_idx_without_labels(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28)))
    assert load_images(str(tmp_path / "t10k-images-idx3-ubyte")).labels is None


@pytest.mark.parametrize("layout", ["nhw", "nchw", "nhwc", "flat", "float01"])
def test_npz_layouts(tmp_path, layout):
    images, labels = digits28(10)
    x = {"nhw": images[:, 0], "nchw": images, "nhwc": images.transpose(0, 2, 3, 1),
         "flat": images.reshape(10, -1), "float01": images / 255.0}[layout]
    np.savez(tmp_path / "d.npz", x=x, y=labels)
    s = load_images(str(tmp_path / "d.npz"))
    assert np.array_equal(s.images, images) and np.array_equal(s.labels, labels)


def test_sklearn_digits_builtin():
    s = load_images("sklearn-digits")
    assert s.images.shape == (1797, 1, 8, 8) and s.images.max() == 255
    assert sorted(set(s.labels.tolist())) == list(range(10))


def _bad(tmp_path, name: str, content: bytes | str) -> str:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


PIX4 = ",".join(f"pixel{i}" for i in range(4))
BAD_INPUTS = {
    "missing": (lambda t: str(t / "nope.csv"), "file not found"),
    "unknown format": (lambda t: _bad(t, "x.txt", "1,2"), "unknown format"),
    "folder without images": (lambda t: str(t), "no image files"),
    "empty csv": (lambda t: _bad(t, "e.csv", ""), "empty CSV"),
    "header only": (lambda t: _bad(t, "h.csv", f"label,{PIX4}\n"), "no rows"),
    "no label column": (lambda t: _bad(t, "n.csv", f"digit,{PIX4}\n1,0,0,0,0\n"), "expected 'label'"),
    "wrong pixel count": (lambda t: _bad(t, "w.csv", "label,a,b,c,d,e\n1,0,0,0,0,0\n"), "not a square image"),
    # numbered as an editor numbers lines: the header is line 1, blank lines count
    "ragged rows": (lambda t: _bad(t, "r.csv", f"label,{PIX4}\n1,0,0,0,0\n\n1,0,0\n"),
                    "malformed CSV row: line 4 has 3 values, the header 5"),
    "non-numeric pixel": (lambda t: _bad(t, "s.csv", f"label,{PIX4}\n1,0,x,0,0\n"),
                          "malformed CSV row: line 2, column 3: 'x' is not a number"),
    "gzip csv that is not gzip": (lambda t: _bad(t, "g.csv.gz", "label,pixel0\n"), "cannot read as a CSV text file"),
    "binary csv": (lambda t: _bad(t, "bin.csv", bytes(range(128, 256)) * 4), "cannot read as a CSV text file"),
    "gzip idx that is not gzip": (lambda t: _bad(t, "g-idx3-ubyte.gz", b"\0\0\x08\x03"), "cannot read"),
    "pixel out of range": (lambda t: _bad(t, "o.csv", f"label,{PIX4}\n1,0,0,0,0\n1,0,300,0,0\n"), "0..255 (line 3)"),
    "NaN pixel": (lambda t: _bad(t, "nan.csv", f"label,{PIX4}\n1,0,nan,0,0\n"), "finite numbers (line 2)"),
    "negative label": (lambda t: _bad(t, "l.csv", f"label,{PIX4}\n-1,0,0,0,0\n"), "non-negative integers"),
    "fractional label": (lambda t: _bad(t, "f.csv", f"label,{PIX4}\n1.5,0,0,0,0\n"), "non-negative integers (line 2)"),
    "idx bad magic": (lambda t: _bad(t, "b-idx3-ubyte", b"\x01\x02\x03\x04rest"), "bad magic"),
    "idx truncated": (lambda t: _bad(t, "c-idx3-ubyte", bytes([0, 0, 8, 3]) + (5).to_bytes(4, "big")
                                       + (28).to_bytes(4, "big") * 2 + b"\0" * 100), "IDX body"),
    "npz without x": (lambda t: (np.savez(t / "z.npz", images=np.zeros(3)), str(t / "z.npz"))[1], "no array 'x'"),
    "npz that is no zip": (lambda t: _bad(t, "p.npz", b"\x80\x04garbage"), "not a .npz archive"),
    "npz with text labels": (lambda t: (np.savez(t / "s.npz", x=np.zeros((4, 28, 28), np.uint8), y=np.array(list("abcd"))),
                                        str(t / "s.npz"))[1], "'y' must hold numbers"),
    "npz with five channels": (lambda t: (np.savez(t / "c.npz", x=np.zeros((4, 5, 28, 28), np.uint8), y=np.zeros(4)),
                                          str(t / "c.npz"))[1], "images have 5 channels; sgan takes 1 (grey) or 3"),
    "idx with two channels": (lambda t: str(write_idx(t / "two-idx3-ubyte", np.zeros((3, 28, 28, 2)))),
                              "images have 2 channels"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_clear_error(tmp_path, case):
    make, message = BAD_INPUTS[case]
    path = make(tmp_path)
    with pytest.raises(SganError) as err:
        load_images(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)  # names the file
    assert "\n" not in str(err.value)


def test_gzipped_csv(tmp_path):
    images, labels = digits28(5)
    plain = write_kaggle_csv(tmp_path / "a.csv", images[:, 0], labels)
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(plain.read_bytes()))
    assert np.array_equal(load_images(str(tmp_path / "a.csv.gz")).labels, labels)
