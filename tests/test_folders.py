"""Image folders: modes, sizes, broken files, and the ResNet18 SGAN end to end on CPU."""

import csv
import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sgan.data.folders import decode, read_folder
from sgan.errors import SganError
from conftest import planned, run_sgan

ORIGINALS = Path(__file__).resolve().parents[2] / "shared" / "data" / "pets-originals"


def photo(seed: int, size: tuple[int, int] = (40, 30)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def bomb_png() -> bytes:
    """A valid 1x1 PNG whose header then claims 100,000 x 100,000 pixels (CRC fixed up)."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = 8  # after the signature: length (4), b"IHDR" (4), width, height, ...
    data[ihdr + 8: ihdr + 16] = struct.pack(">II", 100_000, 100_000)
    data[ihdr + 21: ihdr + 25] = struct.pack(">I", zlib.crc32(bytes(data[ihdr + 4: ihdr + 21])))
    return bytes(data)


def write_broken(folder: Path) -> dict[str, str]:
    """The broken files of the catalogue, by name -> what they are."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero.jpg").write_bytes(b"")
    jpeg = io.BytesIO()
    photo(99, (64, 64)).save(jpeg, "JPEG")
    (folder / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (folder / "text.jpg").write_text("this is not an image\n")
    (folder / "bomb.png").write_bytes(bomb_png())
    return {"zero.jpg": "zero bytes", "truncated.jpg": "truncated JPEG", "text.jpg": "text named .jpg",
            "bomb.png": "decompression bomb header"}


def make_pets(root: Path, per_class: int = 12, size: int = 40) -> Path:
    for c, name in enumerate(["cat", "dog"]):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = photo(100 * c + i, (size + i, size))  # not square: center-cropped
            img = Image.fromarray((np.asarray(img) // 2 + 120 * c).astype(np.uint8))  # classes differ in brightness
            img.save(root / name / f"{i}.{'png' if i % 3 == 0 else 'jpg'}")
    return root


def test_modes_and_bit_depths_decode_to_the_run_shape(tmp_path):
    a16 = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)  # 0..65520
    Image.fromarray(a16).save(tmp_path / "deep.png")
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:4, ..., 3] = 255  # top half opaque red, bottom half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    photo(1).convert("P").save(tmp_path / "palette.png")
    photo(2).convert("CMYK").save(tmp_path / "cmyk.jpg")
    photo(3).convert("L").save(tmp_path / "gray.bmp")

    deep = decode(tmp_path / "deep.png", size=64, channels=1)
    assert deep.shape == (1, 64, 64) and deep.dtype == np.uint8
    assert deep.max() > 250 and deep.min() == 0  # scaled from 16 bits, not clipped to white
    alpha = decode(tmp_path / "alpha.png", size=8, channels=3)
    assert tuple(alpha[:, 0, 0]) == (200, 0, 0) and tuple(alpha[:, 7, 7]) == (255, 255, 255)
    for name in ("palette.png", "cmyk.jpg", "gray.bmp"):
        for channels in (1, 3):
            assert decode(tmp_path / name, size=32, channels=channels).shape == (channels, 32, 32)


def test_broken_files_are_skipped_and_listed(tmp_path):
    root = make_pets(tmp_path / "pets", per_class=4)
    broken = write_broken(root / "dog")
    images = read_folder(root, size=32, channels=3, workers=0)
    assert images.classes == ["cat", "dog"]
    assert len(images) == 8 and images.images.shape == (8, 3, 32, 32)
    assert np.bincount(images.labels).tolist() == [4, 4]
    skipped = {Path(f).name: reason for f, reason in images.skipped}
    assert set(skipped) == set(broken)
    assert "truncated" in skipped["truncated.jpg"]
    assert "100000" in skipped["bomb.png"] or "bomb" in skipped["bomb.png"].lower()
    assert all(Path(p).name not in broken for p in images.paths)


def test_workers_decode_the_same_images(tmp_path):
    root = make_pets(tmp_path / "pets", per_class=3)
    write_broken(root / "cat")
    a = read_folder(root, size=32, channels=3, workers=0)
    b = read_folder(root, size=32, channels=3, workers=2)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert a.skipped == b.skipped and a.paths.tolist() == b.paths.tolist()


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SganError, match="no image files"):
        read_folder(tmp_path / "empty", size=32, channels=3)
    write_broken(tmp_path / "allbad")
    with pytest.raises(SganError, match="none of its 4 image files could be decoded"):
        read_folder(tmp_path / "allbad", size=32, channels=3)


@pytest.mark.skipif(not ORIGINALS.is_dir(), reason="../shared/data/pets-originals not present")
def test_full_size_originals(tmp_path):
    images = read_folder(ORIGINALS, size=64, channels=3, workers=2)
    assert images.classes == ["cat", "dog"] and images.skipped == []
    assert images.images.shape == (16, 3, 64, 64)
    assert np.bincount(images.labels).tolist() == [8, 8]
    assert 20 < images.images.mean() < 235  # real photos, not blank frames


run_cli = run_sgan  # the command line, in this process


def test_resnet18_sgan_end_to_end_on_folders(tmp_path):
    from sgan import train

    root = make_pets(tmp_path / "pets", per_class=12)
    write_broken(root / "cat")
    unlabeled = tmp_path / "more"
    unlabeled.mkdir()
    for i in range(6):
        photo(500 + i).save(unlabeled / f"u{i}.jpg")
    out = tmp_path / "run"
    metrics = train(data=str(root), unlabeled=str(unlabeled), model="resnet18", image_size=32, n_labeled=4,
                    val_per_class=2, test_per_class=2, iterations=4, batch_size=4, eval_every=2, log_every=2,
                    select="best_val", loader_workers=0, progress=False, out=str(out))
    for name in ("supervised", "sgan"):
        m = metrics.methods[name]
        assert set(m.accuracy) >= {"val", "test"} and 0 <= m.accuracy["test"] <= 1
        assert m.selected_step in (2, 4)
    assert metrics.protocol.counts == {"labeled": 4, "unlabeled": 6, "val": 4, "test": 4}
    assert sorted(p.name for p in (out / "samples" / "sgan").iterdir()) == ["step_0000002.png", "step_0000004.png"]
    assert Image.open(out / "sgan_samples.png").size[0] > 32
    with open(out / "skipped_files.csv") as f:
        assert {Path(r["file"]).name for r in csv.DictReader(f)} == {"zero.jpg", "truncated.jpg", "text.jpg", "bomb.png"}

    pred = run_cli("predict", str(out), "--data", str(root / "dog"), "--out", str(tmp_path / "pred.csv"))
    assert pred.returncode == 0, pred.stderr
    with open(tmp_path / "pred.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and {r["label"] for r in rows} <= {"cat", "dog"}
    assert all(0.5 <= float(r["confidence"]) <= 1 for r in rows)


def test_decoding_workers_start_under_spawn(tmp_path):
    """A sweep's cells are spawned processes, whose own loader workers are spawned too: what the
    loader sends them must pickle (a lambda did not, and every sweep over a folder failed)."""
    root = make_pets(tmp_path / "pets", per_class=3)
    code = ("import multiprocessing, sys\n"
            "from pathlib import Path\n"
            "from sgan.data.folders import read_folder\n"
            "if __name__ == '__main__':\n"
            "    multiprocessing.set_start_method('spawn')\n"
            "    s = read_folder(Path(sys.argv[1]), size=16, channels=3, workers=2)\n"
            "    print(s.images.shape)\n")
    done = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(6, 3, 16, 16)"


def test_one_class_folder_is_a_clear_cli_error(tmp_path):
    (tmp_path / "only").mkdir()
    for i in range(5):
        photo(i).save(tmp_path / "only" / f"{i}.jpg")
    r = run_cli("train", "--data", str(tmp_path), "--model", "resnet18", "--image-size", "32",
                "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and "one class" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_resnet18_and_generator_shapes_and_gradients():
    from sgan.config import Config
    from sgan.methods import build_method

    torch.manual_seed(0)
    cfg = Config(model="resnet18", image_size=32)
    method = build_method("sgan", planned(cfg, channels=3, num_classes=2), device=torch.device("cpu"))
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    out = method.train_step(x, torch.tensor([0, 1, 0, 1]), x)
    assert all(np.isfinite(v) for v in out.values())
    for name, p in [*method.classifier.named_parameters(), *method.generator.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
