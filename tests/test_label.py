"""`sgan label`: the page where a person labels the picks of `sgan suggest-labels`."""

from __future__ import annotations

import csv
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import chromium_driver, prepared, run_sgan
from sgan.config import Config, resolve
from sgan.data.picks import SKIPPED
from sgan.data.readers import read_sklearn_digits
from sgan.errors import PAUSE_AT, SganError
from sgan.label import Labeling, Refused, label_server
from sgan.run import SuggestFolder
from sgan.suggest import pick_representatives, suggest_labels

BUDGET = 15


@pytest.fixture(scope="module")
def suggested(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("suggested") / "s"
    suggest_labels(resolve({"data": "sklearn-digits", "seed": 0, "progress": False}), budget=BUDGET, out=out,
                   strategy="random")
    return out


@pytest.fixture
def suggestions(suggested, tmp_path) -> Path:
    """A fresh copy of one suggestions folder (15 random picks of scikit-learn's digits), to label."""
    return Path(shutil.copytree(suggested, tmp_path / "s"))


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@contextmanager
def serving(folder: Path):
    server = label_server(folder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def request(server, method: str, target: str, body: dict | str | None = None,
            headers: dict | None = None) -> tuple[int, dict | bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    payload = json.dumps(body) if isinstance(body, dict) else body
    conn.putrequest(method, target, skip_host="Host" in (headers or {}))
    for name, value in {"Content-Type": "application/json", **(headers or {}),
                        **({"Content-Length": str(len(payload))} if payload is not None else {})}.items():
        conn.putheader(name, value)
    conn.endheaders(payload.encode() if payload is not None else None)
    reply = conn.getresponse()
    data = reply.read()
    conn.close()
    return reply.status, json.loads(data) if reply.getheader("Content-Type") == "application/json" else data


def test_suggest_writes_a_reserve_and_the_images_the_page_shows(suggestions):
    picks, reserve = read(suggestions / "picks.csv"), read(suggestions / "reserve.csv")
    summary = json.loads((suggestions / "suggest.json").read_text())
    assert len(picks) == len(reserve) == summary["reserve"] == BUDGET
    assert not {r["index"] for r in picks} & {r["index"] for r in reserve}
    for row in picks + reserve:
        with Image.open(suggestions / "images" / f"{row['index']}.png") as image:
            assert image.size == (28, 28) and image.mode == "L"
    assert summary["classes"] == [str(c) for c in range(10)]
    assert summary["train_flags"] == "--data sklearn-digits"
    assert Labeling(suggestions).command == f"sgan train --data sklearn-digits --labels-csv {suggestions.resolve()}/picks.csv"


def test_the_representative_reserve_follows_the_picks_and_repeats_none():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(6, 8)) * 5
    features = means[np.repeat(np.arange(6), 30)] + rng.normal(size=(180, 8)) * 1.5  # clusters apart, members too
    picks = pick_representatives(features, 6, seed=0)
    offered = pick_representatives(features, 6, seed=0, reserve=12)
    assert np.array_equal(offered[:6], picks) and len(offered) == 18 and len(set(offered.tolist())) == 18
    clusters = np.repeat(np.arange(6), 30)
    # round by round over the clusters: the first six stand-ins are one per cluster
    assert sorted(clusters[offered[6:12]].tolist()) == list(range(6))


def test_answers_and_skips_are_written_at_once_and_read_back(suggestions):
    labeling = Labeling(suggestions)
    first, second = labeling.rows[0].index, labeling.rows[1].index
    reserve = read(suggestions / "reserve.csv")
    labeling.answer(first, 3)
    state = labeling.answer(second, SKIPPED)
    rows = read(suggestions / "picks.csv")
    assert [r["label"] for r in rows[:2]] == ["3", SKIPPED] and all(r["label"] == "" for r in rows[2:])
    assert rows[-1]["index"] == reserve[0]["index"] and len(rows) == BUDGET + 1  # the reserve's first took its place
    assert (state["labeled"], state["budget"], state["reserve_left"]) == (1, BUDGET, BUDGET - 1)
    assert Labeling(suggestions).state() == state  # reopened: where it stopped
    labeling.answer(first, 5)  # back, and changed
    assert read(suggestions / "picks.csv")[0]["label"] == "5"


@pytest.mark.parametrize("index, label, status", [
    (-1, 1, 404), ("first", 1, 400), (1.0, 1, 400),
    (None, 10, 400), (None, -1, 400), (None, True, 400), (None, "3", 400), (None, 1.5, 400), (None, "skipped", 400),
])
def test_an_answer_the_page_never_gives_is_refused_and_writes_nothing(suggestions, index, label, status):
    labeling = Labeling(suggestions)
    before = (suggestions / "picks.csv").read_bytes()
    with pytest.raises(Refused) as refused:
        labeling.answer(labeling.rows[0].index if index is None else index, label)
    assert refused.value.status == status
    assert (suggestions / "picks.csv").read_bytes() == before


def test_a_skipped_pick_cannot_be_answered_and_an_empty_reserve_leaves_the_budget_short(suggestions):
    labeling = Labeling(suggestions)
    skipped = labeling.rows[0].index
    labeling.answer(skipped, SKIPPED)
    with pytest.raises(Refused) as refused:
        labeling.answer(skipped, 1)
    assert refused.value.status == 409
    (suggestions / "reserve.csv").write_text("index,path\n")
    labeling = Labeling(suggestions)
    state = labeling.answer(labeling.rows[1].index, SKIPPED)
    assert (state["budget"], state["reserve_left"]) == (BUDGET - 1, 0)


def test_train_leaves_skipped_picks_out_and_refuses_a_half_filled_file_naming_its_first_gap(suggestions):
    truth = read_sklearn_digits().labels
    labeling = Labeling(suggestions)
    labeling.answer(labeling.rows[2].index, SKIPPED)
    for row in labeling.rows[:5]:
        if row.label != SKIPPED:
            labeling.answer(row.index, int(truth[row.index]))
    picks = str(suggestions / "picks.csv")
    with pytest.raises(SganError, match=rf"picks.csv line 7: no label \(11 of 16 rows have none\).*sgan label"):
        prepared(Config(data="sklearn-digits", seed=0, labels_csv=picks))
    for row in labeling.rows:
        if not row.label:
            labeling.answer(row.index, int(truth[row.index]))
    data = prepared(Config(data="sklearn-digits", seed=0, labels_csv=picks))
    kept = sorted(r.index for r in labeling.rows if r.label != SKIPPED)
    assert data.split.labeled.tolist() == kept and len(kept) == BUDGET
    assert data.labeled.y.tolist() == truth[kept].tolist()


def test_the_server_refuses_what_it_does_not_serve_and_keeps_serving(suggestions, capfd):
    pick = read(suggestions / "picks.csv")[0]["index"]
    before = (suggestions / "picks.csv").read_bytes()
    with serving(suggestions) as server:
        assert request(server, "GET", f"/image/{pick}.png")[0] == 200
        refusals = [("GET", "/../picks.csv", None, {}), ("GET", "/%2e%2e/picks.csv", None, {}),
                    ("GET", "/image/..%2fpicks.csv", None, {}), ("GET", "/image/%2e%2e%2fsuggest.json", None, {}),
                    ("GET", "/image/../suggest.json", None, {}), ("GET", f"{suggestions.resolve()}/picks.csv", None, {}),
                    ("GET", "//etc/passwd", None, {}), ("GET", "/images/", None, {}), ("GET", "/image/", None, {}),
                    ("GET", "/image/99999.png", None, {}), ("GET", "/picks.csv", None, {}),
                    ("POST", "/answer", {"index": 99999, "label": 1}, {}),
                    ("POST", "/answer", {"index": int(pick), "label": 10}, {}),
                    ("POST", "/answer", {"index": int(pick), "label": 1}, {"Content-Type": "text/plain"}),
                    ("POST", "/answer", "not json", {}), ("POST", "/state", {"index": int(pick), "label": 1}, {}),
                    ("PUT", "/answer", {"index": int(pick), "label": 1}, {}), ("DELETE", "/", None, {}),
                    ("GET", "/state", None, {"Host": "attacker.example:80"}), ("GET", "//[x/", None, {}),
                    ("POST", "/answer", "[" * 1000, {})]
        capfd.readouterr()
        for method, target, body, headers in refusals:
            status, reply = request(server, method, target, body, headers)
            assert 400 <= status < 500 and "error" in reply, (method, target, status)
        lines = capfd.readouterr().err.splitlines()
        assert len(lines) == len(refusals) and all(line.startswith("sgan label: refused") for line in lines)
        assert "Traceback" not in "".join(lines)
        status, state = request(server, "GET", "/state")
        assert status == 200 and state["budget"] == BUDGET
        assert request(server, "POST", "/answer", {"index": int(pick), "label": 4})[0] == 200
    assert before != (suggestions / "picks.csv").read_bytes() and read(suggestions / "picks.csv")[0]["label"] == "4"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.com", ""])
def test_only_a_loopback_address_is_bound(suggestions, host):
    with pytest.raises(SganError, match="loopback"):
        label_server(suggestions, host=host)


def test_the_command_line_refuses_in_one_line(suggestions, tmp_path):
    """A public address, a port out of range, a folder without picks, broken files, a folder
    another server is labeling (two would overwrite each other's answers)."""
    def refused(*args: str, folder: Path = suggestions) -> str:
        proc = run_sgan("label", str(folder), "--no-browser", *args)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
        return proc.stderr

    assert "loopback" in refused("--host", "0.0.0.0")
    assert "a port is 1 to 65535" in refused("--port", "70000")
    assert "suggest.json: not found" in refused(folder=tmp_path)
    with SuggestFolder(suggestions).in_use():
        assert "in use by another sgan process" in refused()
    (suggestions / "reserve.csv").write_text("index,path\nseven,\n")
    assert "reserve.csv line 2: index 'seven' is not a whole number" in refused()
    (suggestions / "suggest.json").write_text("[1, 2]")
    assert "not the JSON object" in refused()


def test_a_kill_9_while_an_answer_is_written_loses_that_answer_only(suggestions, tmp_path):
    labeling = Labeling(suggestions)
    for row in labeling.rows[:5]:  # five answers given before
        labeling.answer(row.index, 2)
    before = (suggestions / "picks.csv").read_bytes()
    paused = tmp_path / "pid"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", PAUSE_AT: f"writing:{paused}"}
    server = subprocess.Popen([sys.executable, "-m", "sgan", "label", str(suggestions), "--no-browser"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        port = int(server.stdout.readline().split("http://127.0.0.1:")[1].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/answer", json.dumps({"index": labeling.rows[5].index, "label": 7}),
                     {"Content-Type": "application/json"})  # the sixth: its new picks.csv written, not yet in place
        for _ in range(3000):
            if paused.exists() and paused.read_text():
                break
            time.sleep(0.01)
        assert paused.read_text() == str(server.pid)
        server.send_signal(signal.SIGKILL)
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            conn.getresponse()
    finally:
        server.kill()
        server.wait()
    assert (suggestions / "picks.csv").read_bytes() == before  # whole, with the five answers given before
    reopened = Labeling(suggestions)
    assert reopened.state()["labeled"] == 5
    reopened.answer(labeling.rows[5].index, 7)  # and labeling goes on
    assert [r["label"] for r in read(suggestions / "picks.csv")[:7]] == ["2"] * 5 + ["7", ""]


def test_a_person_labels_by_keyboard_and_mouse_skips_one_and_reloads(suggestions):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium_driver()
    try:
        with serving(suggestions) as server:
            driver.get(server.url)
            wait = WebDriverWait(driver, 10)
            counter = driver.find_element(By.ID, "counter")

            def shows(text: str) -> None:
                wait.until(lambda d: counter.text == text)

            shows(f"0 of {BUDGET} labeled")
            rows = read(suggestions / "picks.csv")
            given = {}
            body = driver.find_element(By.TAG_NAME, "body")
            for n, row in enumerate(rows[:10]):  # keys 1..9, 0 for the tenth class
                c = n % 10
                body.send_keys("0" if c == 9 else str(c + 1))
                given[row["index"]] = str(c)
                shows(f"{n + 1} of {BUDGET} labeled")
            buttons = driver.find_elements(By.CSS_SELECTOR, "#buttons button")
            assert [b.find_element(By.TAG_NAME, "span").text for b in buttons] == [str(c) for c in range(10)]
            for n, row in enumerate(rows[10:13]):
                buttons[7 - n].click()
                given[row["index"]] = str(7 - n)
                shows(f"{11 + n} of {BUDGET} labeled")
            driver.find_element(By.ID, "skip").click()
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#strip figure")) == BUDGET + 1)

            driver.refresh()
            counter = driver.find_element(By.ID, "counter")
            shows(f"13 of {BUDGET} labeled")
            reserve = read(suggestions / "reserve.csv")
            written = read(suggestions / "picks.csv")
            assert {r["index"]: r["label"] for r in written[:13]} == given
            assert written[13]["label"] == SKIPPED and written[14]["label"] == ""
            assert written[15] == {"index": reserve[0]["index"], "path": "", "label": ""}
            # resumed at the first pick not yet answered
            assert driver.find_element(By.ID, "picture").get_attribute("src").endswith(f"/image/{written[14]['index']}.png")
            assert not driver.find_element(By.ID, "done").is_displayed()
            body = driver.find_element(By.TAG_NAME, "body")
            body.send_keys("2")
            shows(f"14 of {BUDGET} labeled")
            body.send_keys("3")
            shows(f"{BUDGET} of {BUDGET} labeled")
            done = driver.find_element(By.ID, "done")
            assert done.is_displayed() and "sgan train --data sklearn-digits --labels-csv" in done.text
            assert [r["label"] for r in read(suggestions / "picks.csv")][14:] == ["1", "2"]
            assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        driver.quit()


def test_a_second_key_while_the_first_is_sent_never_answers_the_same_pick_and_back_changes_an_answer(suggestions):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium_driver()
    try:
        with serving(suggestions) as server:
            driver.get(server.url)
            WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "counter").text.startswith("0 of"))
            driver.find_element(By.TAG_NAME, "body").send_keys("12")  # at once: the second while the first is sent
            WebDriverWait(driver, 10).until(lambda d: not d.execute_script("return sending"))
            rows = read(suggestions / "picks.csv")
            assert rows[0]["label"] == "0"  # the first key's answer stands
            assert rows[1]["label"] in ("", "1") and all(r["label"] == "" for r in rows[2:])
            back = 2 if rows[1]["label"] else 1  # back to the first pick, and change its answer
            body = driver.find_element(By.TAG_NAME, "body")
            for _ in range(back):
                body.send_keys(Keys.ARROW_LEFT)
            assert driver.find_element(By.ID, "picture").get_attribute("src").endswith(f"/image/{rows[0]['index']}.png")
            body.send_keys("4")
            WebDriverWait(driver, 10).until(lambda d: read(suggestions / "picks.csv")[0]["label"] == "3")
    finally:
        driver.quit()
