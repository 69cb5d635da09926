"""report.html: one self-contained page per run or sweep (images embedded as data URIs, no
scripts, no network), rebuilt from the folder's files alone."""

from __future__ import annotations

import base64
import io
import json
from html import escape
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..files import atomic_write_text
from ..errors import SganError
from ..registry import REGISTRY
from ..run import MethodResult, RunFolder, RunProtocol, SweepFolder
from .tables import eval_sets, eval_table, verdict_note, verdict_table

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .6em 0; } td, th { border: 1px solid #ccc; padding: .25em .6em; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: .3em; text-align: center; font-size: .85em; }
img { max-width: 100%; height: auto; } img.pixel { image-rendering: pixelated; } .muted { color: #666; } pre { background: #f7f7f7; padding: .8em; }
"""
GRIDS_SHOWN = 5  # sample grids per method, evenly spaced over training


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def image_png(image: torch.Tensor) -> bytes:
    """One uint8 image (C, H, W) -> PNG bytes."""
    array = image.permute(1, 2, 0).numpy()  # (H, W, C)
    buf = io.BytesIO()
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(buf, format="png")
    return buf.getvalue()


def img(png: bytes, alt: str, *, width: int | None = None, pixel: bool = False) -> str:
    size = f' width="{width}"' if width else ""
    cls = ' class="pixel"' if pixel else ""
    return f'<img src="{data_uri(png)}" alt="{escape(alt)}"{size}{cls}>'


def table(header: list[str], rows: list[list[str]], *, numeric_from: int = 1) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="num">{escape(c)}</td>' if i >= numeric_from else f"<td>{escape(c)}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def page(title: str, sections: list[str]) -> str:
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{''.join(sections)}</body></html>\n")


def confusion_html(confusion: torch.Tensor, classes: list[str]) -> str:
    """Rows: true class, columns: predicted; cells shaded by their share of the row."""
    share = confusion.float() / confusion.sum(dim=1, keepdim=True).clamp(min=1)
    head = "<tr><th>true \\ predicted</th>" + "".join(f"<th>{escape(c)}</th>" for c in classes) + "</tr>"
    body = ""
    for i, name in enumerate(classes):
        cells = "".join(f'<td class="num" style="background: rgba(31,119,180,{share[i, j]:.2f})">{int(confusion[i, j])}</td>'
                        for j in range(len(classes)))
        body += f"<tr><th>{escape(name)}</th>{cells}</tr>"
    return f"<table>{head}{body}</table>"


def wrong_html(d: dict[str, torch.Tensor], classes: list[str]) -> str:
    """One evaluation set's most confidently wrong images (`d`: its diagnostics)."""
    images = d["wrong_images"]
    if not len(images):
        return "<p class='muted'>no mistakes</p>"
    side = max(64, images.shape[-1])
    figures = [f"<figure>{img(image_png(im), f'true {classes[t]}, predicted {classes[p]}', width=side, pixel=True)}"
               f"<figcaption>true {escape(classes[t])}<br>predicted {escape(classes[p])} ({c:.2f})</figcaption></figure>"
               for im, t, p, c in zip(images, d["wrong_true"].tolist(), d["wrong_predicted"].tolist(),
                                      d["wrong_confidence"].tolist())]
    return "<div>" + "".join(figures) + "</div>"


def sample_grids(run: RunFolder, method: str) -> list[Path]:
    """Up to GRIDS_SHOWN of the method's grids, evenly spaced over training."""
    grids = run.sample_grids(method)
    if len(grids) <= GRIDS_SHOWN:
        return grids
    picks = {round(i * (len(grids) - 1) / (GRIDS_SHOWN - 1)) for i in range(GRIDS_SHOWN)}
    return [grids[i] for i in sorted(picks)]


def facts_text(protocol: RunProtocol) -> str:
    unlabeled = protocol.unlabeled + (" (transductive: an evaluation set used unlabeled)" if protocol.transductive else "")
    return (f"data {protocol.data}" + (f" (preset {protocol.preset})" if protocol.preset else "")
            + f"; {protocol.n_labeled} labeled; unlabeled: {unlabeled}; seed {protocol.seed}; "
            f"{protocol.iterations} iterations at batch {protocol.batch_size}; selection: {protocol.selection}")


def results_html(methods: dict[str, MethodResult]) -> str:
    eval_sets = list(next(iter(methods.values())).accuracy)
    return table(["method", *[f"{s} accuracy %" for s in eval_sets], "training time (s)", "iterations",
                  "weights kept from step"],
                 [[name, *(f"{100 * m.accuracy[s]:.2f}" for s in eval_sets), str(m.train_seconds), str(m.iterations),
                   str(m.selected_step)] for name, m in methods.items()])


def data_html(sets_info: dict[str, dict[str, Any]], classes: list[str]) -> list[str]:
    return ["<h2>Data</h2>", table(
        ["set", "images", "per class", "pixel mean", "pixel std"],
        [[name, str(s["images"]), " ".join(map(str, s["per_class"])) if s["per_class"] else "(unlabeled)",
          f"{s['pixel_mean']:.4f}", f"{s['pixel_std']:.4f}"] for name, s in sets_info.items()]),
        f"<p class='muted'>Per class: counts of classes {escape(', '.join(classes))}. "
        "Pixel statistics in the model's [-1, 1] range: a different mean or std is a shift.</p>"]


def samples_html(run: RunFolder, methods: list[str]) -> list[str]:
    grids = {m: sample_grids(run, m) for m in methods if REGISTRY[m].has_generator}
    if not any(grids.values()):
        return []
    out = ["<h2>Generated samples</h2><p class='muted'>The same fixed noise batch at each point.</p>"]
    for method, paths in grids.items():
        figures = "".join(f"<figure>{img(p.read_bytes(), f'{method} {p.stem}', width=240, pixel=True)}"
                          f"<figcaption>{escape(method)}, step {int(p.stem.split('_')[1])}</figcaption></figure>"
                          for p in paths)
        out.append(f"<div>{figures}</div>")
    return out


def mistakes_html(run: RunFolder, methods: list[str], classes: list[str]) -> list[str]:
    out = []
    for method in methods:
        if not run.diagnostics(method).is_file():
            continue
        out.append(f"<h2>{escape(method)}: confusion and confident mistakes</h2>")
        for name, d in run.read_diagnostics(method).items():
            out += [f"<h3>{escape(method)} on {escape(name)}</h3>", confusion_html(d["confusion"], classes),
                    "<p>Most confidently wrong:</p>", wrong_html(d, classes)]
    return out


def run_sections(run: RunFolder) -> list[str]:
    metrics, config = run.read_metrics(), run.read_config()
    protocol, methods = metrics.protocol, metrics.methods
    classes = protocol.classes or [str(i) for i in range(config.num_classes or 0)]
    out = [f"<p>{escape(facts_text(protocol))}</p>", "<h2>Results</h2>", results_html(methods),
           "<p class='muted'>Two test-time adaptations that look at a set's own images (no labels), each reported "
           "apart: +adabn re-estimates BatchNorm statistics on them; +std moves the set from its own pixel mean/std "
           "(over the whole set) to the training pool's. A set without a mark used neither.</p>"]
    if protocol.sets:
        out += data_html(protocol.sets, classes)
    out.append("<h2>Training curves</h2>")
    out.append(img(run.losses_plot.read_bytes(), "training curves") if run.losses_plot.is_file() else
               "<p class='muted'>Not kept in this folder.</p>")
    out += samples_html(run, list(methods))
    out += mistakes_html(run, list(methods), classes)
    out += ["<h2>Config</h2>", f"<pre>{escape(json.dumps(config.to_dict(), indent=2))}</pre>"]
    return out


def sweep_sections(sweep: SweepFolder) -> list[str]:
    """The verdict, the plot and one table per evaluation set, each made from summary.json's rows."""
    rows = sweep.read_summary()
    header, lines = verdict_table(rows)
    out = ["<h2>Best SGAN variant vs best non-GAN method</h2>", table(header, lines, numeric_from=len(header)),
           f"<p class='muted'>{escape(verdict_note(rows))}</p>"]
    if sweep.budget_plot.is_file():
        out += ["<h2>Accuracy vs label budget</h2>", img(sweep.budget_plot.read_bytes(), "accuracy vs label budget")]
    for eval_set in eval_sets(rows):
        header, lines = eval_table(rows, eval_set)
        out += [f"<h2>{escape(eval_set)}</h2>", table(header, lines, numeric_from=len(header))]
    return out


def write_html_report(folder: str | Path) -> Path:
    """(Re)build `report.html` in a finished run folder or a sweep folder; returns its path."""
    run, sweep = RunFolder(folder), SweepFolder(folder)
    if run.is_complete():
        title, sections, out = "sgan run report", run_sections(run), run.report
    elif sweep.is_sweep():
        title, sections, out = "sgan sweep report", sweep_sections(sweep), sweep.report
    elif run.config.is_file():
        raise SganError(f"{folder}: run not finished (no metrics.json); finish it with sgan train --resume {folder}")
    else:
        raise SganError(f"{folder}: not a run or sweep folder (no metrics.json or summary.json)")
    atomic_write_text(out, page(title, sections))
    return out
