"""--stream: an unlabeled image folder decoded batch by batch while training, resumable exactly."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import digits28, prepared
from sgan.data.batches import IndexStream, StreamedBatches, StreamedFolder, decode_batch
from sgan.errors import SganError
from test_resume import accuracies, finish, start


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory) -> Path:
    """60 real digits as 28 px grayscale PNGs, plus two files that do not decode."""
    folder = tmp_path_factory.mktemp("unlabeled")
    images, _ = digits28(60)
    for i, image in enumerate(images[:, 0]):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.png").write_text("not an image\n")
    return folder


def test_streamed_batches_are_the_drawn_indices_and_to_come_includes_those_waiting(digit_folder):
    folder = StreamedFolder.open(str(digit_folder), size=28, channels=1)
    assert len(folder) == 62
    stream = StreamedBatches(folder, IndexStream(len(folder), 8, torch.Generator().manual_seed(5)),
                             workers=2, device=torch.device("cpu"))
    twin = IndexStream(len(folder), 8, torch.Generator().manual_seed(5))  # the same draws, by hand
    decoder = folder.decoder()
    for _ in range(10):  # more than one pass over the folder: the broken files come up
        images, _ = decode_batch(decoder, twin.next().tolist())
        assert torch.equal(stream.next(), folder.to_model(images))
    assert torch.equal(stream.to_come()[:16], torch.cat([twin.next(), twin.next()]))  # the loader's draws ahead
    assert sorted({Path(f).name for f, _ in stream.skipped}) == ["text.png", "zero.png"]
    stream.close()


def test_an_empty_index_stream_is_refused_rather_than_spinning():
    with pytest.raises(ValueError, match="at least one item"):
        IndexStream(0, 8, torch.Generator())


def test_stream_needs_a_folder(digits_csv):
    from sgan.config import Config

    with pytest.raises(SganError, match="--stream needs --unlabeled to be an image folder"):
        prepared(Config(data=str(digits_csv), unlabeled=str(digits_csv), stream=True))


SETTINGS = ["--n-labeled", "20", "--iterations", "30", "--batch-size", "8", "--eval-every", "10", "--log-every", "5",
            "--checkpoint-every", "5", "--methods", "supervised", "sgan+aug", "--stream", "--loader-workers", "2",
            "--threads", "1", "--no-progress"]


def test_streamed_training_lists_bad_files_and_resumes_exactly(digits_csv, digit_folder, tmp_path):
    ref = tmp_path / "ref"
    code, err = finish(start("--data", str(digits_csv), "--unlabeled", str(digit_folder), "--out", str(ref), *SETTINGS))
    assert code == 0, err
    protocol = json.loads((ref / "metrics.json").read_text())["protocol"]
    assert protocol["counts"]["unlabeled"] == 62 and protocol["sets"]["unlabeled"]["images"] == 62
    skipped = (ref / "skipped_files.csv").read_text()
    assert "zero.png" in skipped and "text.png" in skipped and "warning: skipped 2 image files" in err

    out = tmp_path / "run"
    p = start("--data", str(digits_csv), "--unlabeled", str(digit_folder), "--out", str(out), *SETTINGS)
    deadline = time.time() + 300
    while p.poll() is None and time.time() < deadline:  # stop it inside the streamed SGAN method
        log = out / "metrics.jsonl"
        if log.exists() and '"method": "sgan+aug", "step": 10,' in log.read_text():
            break
        time.sleep(0.01)
    p.send_signal(signal.SIGTERM)
    code, err = finish(p)
    assert code == 128 + signal.SIGTERM, err
    code, err = finish(start("--resume", str(out)))
    assert code == 0, err
    assert accuracies(out) == accuracies(ref)
    for part in ("classifier", "generator"):
        a, b = load_file(out / f"sgan+aug_{part}.safetensors"), load_file(ref / f"sgan+aug_{part}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in b)
