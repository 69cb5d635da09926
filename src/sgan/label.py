"""`sgan label SUGGESTIONS_DIR`: a page on this machine where a person labels the picks of `sgan
suggest-labels`, one large image at a time. Every answer is written to picks.csv at once and
atomically, so a closed tab or a killed server loses at most the answer being given, and
reopening resumes where it stopped. A skipped pick (no clean example of any class) keeps its
row, labelled `skip` (which `sgan train` leaves out), and the next image of reserve.csv is
appended in its place, so the budget stays full.

The server (the standard library's) binds to a loopback address only and answers nothing but
its page, the state, the listed images and answers for listed picks; anything else is refused
with a 4xx and one line on stderr.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import socket
import sys
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .data.picks import COLUMNS, SKIPPED, csv_rows, row_index
from .errors import SganError
from .files import atomic_write_text, csv_text
from .run import SuggestFolder

IMAGE = re.compile(r"/image/(\d{1,12})\.png")
MAX_BODY = 1024  # bytes of an answer's JSON


class Refused(Exception):
    """A request the page never makes: answered with `status` and one line on stderr."""

    def __init__(self, status: HTTPStatus, why: str) -> None:
        super().__init__(why)
        self.status = status


@dataclass
class Row:
    index: int
    path: str
    label: str  # "" unanswered, a class name, or SKIPPED


class Labeling:
    """A suggestions folder being labeled: picks.csv's rows, the reserve, the class names, and the
    lock under which an answer is written."""

    def __init__(self, folder: str | Path, classes: list[str] | None = None) -> None:
        self.folder = SuggestFolder(folder)
        if not self.folder.path.is_dir():
            raise SganError(f"{folder}: not a folder (give the --out folder of sgan suggest-labels)")
        try:
            summary = json.loads(read_text(self.folder.summary))
        except ValueError:
            summary = None
        if not isinstance(summary, dict):
            raise SganError(f"{self.folder.summary}: not the JSON object sgan suggest-labels writes")
        self.classes = classes or summary.get("classes")
        if not self.classes:
            raise SganError(f"{self.folder.summary}: names no classes (the pool has none); give them with --classes")
        if len(set(self.classes)) != len(self.classes) or SKIPPED in self.classes:
            raise SganError(f"classes {', '.join(self.classes)}: each must be named once, and none {SKIPPED!r}")
        self.command = self.folder.train_command(summary.get("train_flags", ""))
        self.rows = [self._row(where, r) for where, r in csv_rows(read_path(self.folder.picks), COLUMNS)]
        self.reserve = [self._row(where, {**r, "label": ""})
                        for where, r in csv_rows(read_path(self.folder.reserve), COLUMNS[:2])]
        listed = [r.index for r in self.rows + self.reserve]
        if missing := [i for i in listed if not self.folder.image(i).is_file()]:
            raise SganError(f"{self.folder.image(missing[0])}: not found (suggestions from an older sgan: "
                            "run sgan suggest-labels again)")
        self.listed = set(listed)
        self.lock = threading.Lock()

    def _row(self, where: str, row: dict[str, str]) -> Row:
        label = (row["label"] or "").strip()
        if label and label != SKIPPED and label not in self.classes:
            raise SganError(f"{where}: label {label!r} is not one of {', '.join(self.classes)}")
        return Row(row_index(where, row), row["path"] or "", label)

    def state(self) -> dict[str, Any]:
        """What the page shows: the classes, every row in picks.csv's order, the counts."""
        kept = [r for r in self.rows if r.label != SKIPPED]
        return {"classes": self.classes,
                "rows": [{"index": r.index, "label": r.label} for r in self.rows],
                "labeled": sum(bool(r.label) for r in kept), "budget": len(kept),
                "reserve_left": len(self.unused()), "command": self.command}

    def unused(self) -> list[Row]:
        taken = {r.index for r in self.rows}
        return [r for r in self.reserve if r.index not in taken]

    def answer(self, index: Any, label: Any) -> dict[str, Any]:
        """Label the pick `index` with class number `label` (0..K-1) or skip it (SKIPPED: the next
        reserve image is appended in its place); picks.csv rewritten whole before this returns."""
        if type(index) is not int:
            raise Refused(HTTPStatus.BAD_REQUEST, f"index {index!r} is not a whole number")
        if label != SKIPPED and (type(label) is not int or not 0 <= label < len(self.classes)):
            raise Refused(HTTPStatus.BAD_REQUEST, f"label {label!r} is not a class number 0..{len(self.classes) - 1} "
                                                  f"or {SKIPPED!r}")
        with self.lock:
            at = next((n for n, r in enumerate(self.rows) if r.index == index), None)
            if at is None:
                raise Refused(HTTPStatus.NOT_FOUND, f"image {index} is not a pick of {self.folder.picks}")
            if self.rows[at].label == SKIPPED:
                raise Refused(HTTPStatus.CONFLICT, f"image {index} was skipped; its place went to another image")
            rows = [dataclasses.replace(r) for r in self.rows]  # kept only once written
            rows[at].label = SKIPPED if label == SKIPPED else self.classes[label]
            if label == SKIPPED:
                rows += [dataclasses.replace(r) for r in self.unused()[:1]]
            atomic_write_text(self.folder.picks, csv_text(COLUMNS, [[r.index, r.path, r.label] for r in rows]))
            self.rows = rows
            return self.state()

    def image(self, index: int) -> bytes:
        if index not in self.listed:
            raise Refused(HTTPStatus.NOT_FOUND, f"image {index} is not listed in {self.folder}")
        return self.folder.image(index).read_bytes()


def read_path(path: Path) -> Path:
    if not path.is_file():
        raise SganError(f"{path}: not found (is {path.parent} a folder written by sgan suggest-labels?)")
    return path


def read_text(path: Path) -> str:
    try:
        return read_path(path).read_text()
    except UnicodeDecodeError:
        raise SganError(f"{path}: not a text file") from None


def loopback(host: str) -> str:
    """`host` if it is a loopback address (localhost: 127.0.0.1); anything else is refused."""
    address = "127.0.0.1" if host == "localhost" else host
    try:
        if ipaddress.ip_address(address).is_loopback:
            return address
    except ValueError:
        pass
    raise SganError(f"--host {host}: sgan label serves this machine only; give a loopback address "
                    "(127.0.0.1, ::1 or localhost)")


class Handler(BaseHTTPRequestHandler):
    server: "LabelServer"
    timeout = 30  # seconds a request may take to arrive whole

    def do_GET(self) -> None:
        self.respond(lambda: self.route_get(urlsplit(self.path).path))

    def do_POST(self) -> None:
        self.respond(self.route_post)

    def refuse_method(self) -> None:
        self.respond(lambda: self.refuse(HTTPStatus.METHOD_NOT_ALLOWED, "only GET and POST are served"))

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_TRACE = do_CONNECT = refuse_method

    @staticmethod
    def refuse(status: HTTPStatus, why: str) -> Any:
        raise Refused(status, why)

    def route_get(self, path: str) -> tuple[str, bytes]:
        if path == "/":
            return "text/html; charset=utf-8", PAGE.encode()
        if path == "/state":
            return "application/json", json.dumps(self.server.labeling.state()).encode()
        if match := IMAGE.fullmatch(path):
            return "image/png", self.server.labeling.image(int(match[1]))
        self.refuse(HTTPStatus.NOT_FOUND, "no such page")

    def route_post(self) -> tuple[str, bytes]:
        if urlsplit(self.path).path != "/answer":
            self.refuse(HTTPStatus.NOT_FOUND, "no such page")
        if self.headers.get_content_type() != "application/json":  # so that another site's form cannot post
            self.refuse(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "answers are JSON")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.refuse(HTTPStatus.LENGTH_REQUIRED, "no Content-Length")
        if not 0 < length <= MAX_BODY:
            self.refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"an answer is 1 to {MAX_BODY} bytes")
        try:
            body = json.loads(self.rfile.read(length))
            index, label = body["index"], body["label"]
        except (ValueError, KeyError, TypeError, RecursionError):
            self.refuse(HTTPStatus.BAD_REQUEST, 'an answer is {"index": N, "label": K or "skip"}')
        return "application/json", json.dumps(self.server.labeling.answer(index, label)).encode()

    def respond(self, route: Any) -> None:
        host = self.headers.get("Host", "")
        try:
            if host not in self.server.hosts:  # a page of another site reached through its own name (DNS rebinding)
                self.refuse(HTTPStatus.FORBIDDEN, f"Host {host!r} is not this server's address")
            try:
                kind, body = route()
            except (ValueError, RecursionError):  # a target or body that does not parse
                self.refuse(HTTPStatus.BAD_REQUEST, "malformed request")
            except TimeoutError:  # a body shorter than its Content-Length
                self.close_connection = True
                self.refuse(HTTPStatus.REQUEST_TIMEOUT, "the request did not arrive whole")
        except Refused as e:
            self.log_message("refused %s %r: %d %s", self.command, self.path[:200], e.status, e)
            kind, body = "application/json", json.dumps({"error": str(e)}).encode()
            self.send_response(e.status)
        except (SganError, OSError) as e:  # picks.csv could not be written (the answer was not kept), or read
            self.log_message("%s", e)
            kind, body = "application/json", json.dumps({"error": str(e)}).encode()
            self.send_response(HTTPStatus.INTERNAL_SERVER_ERROR)
        else:
            self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if kind == "image/png" else "no-store")  # images never change
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        print(f"sgan label: {format % args}", file=sys.stderr, flush=True)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # only refusals are worth a line


class LabelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, labeling: Labeling, host: str, port: int) -> None:
        if not 0 <= port <= 65535:
            raise SganError(f"--port {port}: a port is 1 to 65535, or 0 for a free one")
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            super().__init__((host, port), Handler)
        except OSError as e:
            raise SganError(f"cannot serve on {host} port {port}: {e.strerror or e} "
                            "(give another --port, or 0 for a free one)") from None
        self.labeling = labeling
        self.port = self.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/"
        self.hosts = {f"{name}:{self.port}" for name in (shown, "localhost")}
        if self.port == 80:  # browsers leave the default port out of Host
            self.hosts |= {shown, "localhost"}

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError):  # a closed tab is no error
            print(f"sgan label: a request failed: {error!r}", file=sys.stderr, flush=True)


def open_browser(url: str) -> bool:
    """Open `url` where a graphical browser can be (never a terminal's text browser)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    import webbrowser

    try:
        return webbrowser.open(url)
    except webbrowser.Error:
        return False


def label_server(folder: str | Path, *, host: str = "127.0.0.1", port: int = 0,
                 classes: list[str] | None = None) -> LabelServer:
    """The server of `folder`'s labeling page, bound (port 0: a free one) but not yet serving."""
    return LabelServer(Labeling(folder, classes), loopback(host), port)


PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sgan label</title><link rel="icon" href="data:,">
<style>
body { font: 16px system-ui, sans-serif; margin: 0; background: #f4f4f4; color: #222; }
header { padding: 10px 20px; background: #fff; border-bottom: 1px solid #ddd; display: flex; gap: 20px; align-items: baseline; }
#counter { font-weight: 600; font-size: 20px; }
main { display: flex; flex-direction: column; align-items: center; padding: 16px; gap: 12px; }
#picture { width: min(55vh, 90vw); height: min(55vh, 90vw); object-fit: contain; background: #fff;
           border: 1px solid #ccc; }
img.small { image-rendering: pixelated; }  /* digits: sharp squares, not a blur */
#where { color: #666; }
#buttons, #moves { display: flex; gap: 8px; flex-wrap: wrap; justify-content: center; }
button { font-size: 18px; padding: 8px 16px; border: 1px solid #888; border-radius: 6px; background: #fff; cursor: pointer; }
button.chosen { background: #2b6cb0; color: #fff; border-color: #2b6cb0; }
button kbd { font-size: 13px; color: #888; margin-right: 6px; }
button.chosen kbd { color: #dde; }
#strip { position: relative; display: flex; gap: 6px; overflow-x: auto; max-width: 95vw; padding: 6px; background: #fff; border: 1px solid #ddd; }
#strip figure { margin: 0; text-align: center; font-size: 12px; cursor: pointer; }
#strip img { width: 64px; height: 64px; object-fit: cover; border: 3px solid transparent; }
#strip figure.current img { border-color: #2b6cb0; }
#strip figure.skipped { opacity: 0.35; }
#done { display: none; background: #e6ffed; border: 1px solid #5a5; padding: 12px 16px; max-width: 90vw; }
#done code { display: block; margin-top: 8px; user-select: all; word-break: break-all; }
#status { color: #b00; min-height: 1.2em; }
</style></head>
<body>
<header><span id="counter">loading…</span><span id="where"></span></header>
<main>
  <div id="done">Every pick is labeled. Train on them with:<code id="command"></code></div>
  <img id="picture" alt="the image to label">
  <div id="buttons"></div>
  <div id="moves">
    <button id="back"><kbd>&larr;</kbd>back</button>
    <button id="skip"><kbd>s</kbd>skip: not a clean example</button>
    <button id="next"><kbd>&rarr;</kbd>next</button>
  </div>
  <div id="status"></div>
  <div id="strip"></div>
</main>
<script>
"use strict";
let state = null, at = 0;

function kept() { return state.rows.map((r, i) => i).filter(i => state.rows[i].label !== "skip"); }
function firstOpen(from) {
  const open = kept().filter(i => !state.rows[i].label);
  return open.find(i => i >= from) ?? open[0] ?? at;
}
function sharpen(e) { e.target.classList.toggle("small", e.target.naturalWidth < 64); }
function key(c) { return c < 9 ? String(c + 1) : c === 9 ? "0" : ""; }

function show() {
  const rows = state.rows, row = rows[at];
  document.getElementById("counter").textContent = `${state.labeled} of ${state.budget} labeled`;
  document.getElementById("where").textContent =
    `image ${row.index} (row ${at + 1} of picks.csv)` + (state.reserve_left ? `, ${state.reserve_left} in reserve` : "");
  document.getElementById("picture").src = `/image/${row.index}.png`;
  const done = state.budget > 0 && state.labeled === state.budget;
  document.getElementById("done").style.display = done ? "block" : "none";
  document.getElementById("command").textContent = state.command;
  document.querySelectorAll("#buttons button").forEach((b, c) =>
    b.classList.toggle("chosen", row.label === state.classes[c]));
  const strip = document.getElementById("strip");
  strip.replaceChildren(...rows.map((r, i) => {
    const f = document.createElement("figure");
    f.className = (i === at ? "current" : "") + (r.label === "skip" ? " skipped" : "");
    f.dataset.row = i;
    f.innerHTML = `<img src="/image/${r.index}.png" alt=""><figcaption></figcaption>`;
    f.querySelector("img").onload = sharpen;
    f.querySelector("figcaption").textContent = r.label || "?";
    f.onclick = () => { if (r.label !== "skip") { at = i; show(); } };
    return f;
  }));
  const current = strip.querySelector(".current");  // centred in the strip; the page itself never scrolls
  if (current) strip.scrollLeft = current.offsetLeft - (strip.clientWidth - current.clientWidth) / 2;
}

let sending = false;  // one answer at a time: a second key waits for the first to be saved
async function send(label) {
  if (sending) return;
  sending = true;
  const status = document.getElementById("status");
  try {
    const row = state.rows[at];
    const reply = await fetch("/answer", {method: "POST", headers: {"Content-Type": "application/json"},
                                          body: JSON.stringify({index: row.index, label: label})});
    const body = await reply.json();
    if (!reply.ok) { status.textContent = body.error; return; }
    status.textContent = "";
    state = body;
    at = firstOpen(at + 1);
    show();
  } catch (error) {
    status.textContent = "not saved: the sgan label server does not answer (is it still running?)";
  } finally {
    sending = false;
  }
}

function move(step) {
  const rows = kept(), here = rows.indexOf(at);
  const to = rows[here + step];
  if (to !== undefined) { at = to; show(); }
}

async function start() {
  state = await (await fetch("/state")).json();
  const buttons = document.getElementById("buttons");
  state.classes.forEach((name, c) => {
    const b = document.createElement("button");
    b.innerHTML = `<kbd>${key(c)}</kbd><span></span>`;
    b.querySelector("span").textContent = name;
    b.onclick = () => send(c);
    buttons.append(b);
  });
  document.getElementById("picture").onload = sharpen;
  document.getElementById("skip").onclick = () => send("skip");
  document.getElementById("back").onclick = () => move(-1);
  document.getElementById("next").onclick = () => move(1);
  document.addEventListener("keydown", e => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    const c = e.key === "0" ? 9 : "123456789".indexOf(e.key);
    if (c >= 0 && c < state.classes.length) send(c);
    else if (e.key === "s") send("skip");
    else if (e.key === "ArrowLeft" || e.key === "Backspace") move(-1);
    else if (e.key === "ArrowRight") move(1);
    else return;
    e.preventDefault();
  });
  at = firstOpen(0);
  show();
}
start();
</script>
</body></html>
"""
