"""mmn-web: the service (upload checks, the feature cache by content hash), the page's handlers and plots,
the start-up refusals of the CLI, and, in a real headless Chromium, the page served by ``mmn-web``.

Everything runs on things the tests make: generated videos, a tiny random CLIP and a tiny MMN trained
for one epoch on its features (tests/helpers/video_model.py). The browser test drives Debian's
``chromium`` + ``chromium-driver`` through selenium and skips, saying why, where they are missing.
``MMN_WEB_SCREENSHOT=docs/images/web_demo.png`` makes it also write its screenshot there.
"""
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import types
import urllib.request

import numpy as np
import pytest
import torch

pytest.importorskip("av")
pytest.importorskip("matplotlib")

from helpers.video_model import ROOT, SENTENCES, train_tiny_video_checkpoint  # noqa: E402
from mmn.predict import Moment, Prediction, Predictor  # noqa: E402
from mmn.video.synthetic import constant_rate_times, write_video, write_without_video_frames  # noqa: E402
from mmn.web.service import (MAX_SENTENCES, VideoMomentService, WebConfigError, WebInputError,  # noqa: E402
                             file_sha256, parse_sentences)

torch.set_num_threads(1)  # a shared 2-core machine
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
           TRANSFORMERS_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", HF_HUB_DISABLE_TELEMETRY="1")


def write_test_video(path, duration=8.0, rate=10):
    """A VP8 WebM video (which Chromium plays) of moving shapes."""
    write_video(str(path), constant_rate_times(duration, rate), width=160, height=120, codec="libvpx", rate=rate)
    return str(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny checkpoint (its config names the tiny CLIP as INPUT.VIDEO.ENCODER) and two test videos."""
    root = tmp_path_factory.mktemp("web")
    made = train_tiny_video_checkpoint(root)
    made["video"] = write_test_video(root / "query.webm", 8.0)
    made["other_video"] = write_test_video(root / "other.webm", 6.0)
    return made


@pytest.fixture(scope="module")
def service(tiny):
    return VideoMomentService.from_checkpoint(tiny["ckpt"], device="cpu", max_upload_mb=1)


def moments_of(predictions):
    """All (start, end, score) of the predictions, flat (what pytest.approx compares)."""
    return [v for p in predictions for m in p.moments for v in (m.start, m.end, m.score)]


# ------------------------------------------------------------------------------------------------ service
def test_sentences_are_the_non_empty_lines():
    assert parse_sentences("  a person opens the door \n\n\tthe person reads a book\n") == [
        "a person opens the door", "the person reads a book"]
    for empty in ("", "   \n \t\n", None):
        with pytest.raises(WebInputError, match="type a sentence"):
            parse_sentences(empty)
    with pytest.raises(WebInputError, match=f"at most {MAX_SENTENCES}"):
        parse_sentences("\n".join(["a person"] * (MAX_SENTENCES + 1)))


def test_the_answer_is_predict_video_and_a_second_sentence_does_not_re_encode(tiny, tmp_path, monkeypatch):
    """Features are cached by the sha256 of the file's bytes: the same video asked again, or uploaded again
    under another name, is not decoded nor encoded again; another video is."""
    service = VideoMomentService.from_checkpoint(tiny["ckpt"], device="cpu")
    calls = []
    real_encode = service.image_encoder.encode_batch
    monkeypatch.setattr(service.image_encoder, "encode_batch", lambda frames: calls.append(len(frames)) or
                        real_encode(frames))
    first = service.answer(tiny["video"], SENTENCES[0], topk=5)
    frames = sum(calls)
    assert frames == first.rows == 16 and not first.cached  # 8 s at 2 fps
    expected = Predictor.from_checkpoint(tiny["ckpt"], device="cpu").predict_video(tiny["video"], [SENTENCES[0]])
    assert moments_of(first.predictions) == pytest.approx(moments_of(expected), abs=1e-6)
    assert first.digest == file_sha256(tiny["video"]) and first.duration == pytest.approx(8.0, abs=1e-3)

    second = service.answer(tiny["video"], f"{SENTENCES[1]}\n{SENTENCES[2]}", topk=3)
    copy = tmp_path / "renamed.webm"
    shutil.copy(tiny["video"], copy)
    third = service.answer(str(copy), SENTENCES[0], topk=5)
    assert sum(calls) == frames, "a cached video was encoded again"
    assert second.cached and third.cached and service.extractions == 1
    assert [p.sentence for p in second.predictions] == SENTENCES[1:3]
    assert [len(p.moments) for p in second.predictions] == [3, 3]
    assert moments_of(third.predictions) == moments_of(first.predictions)

    other = service.answer(tiny["other_video"], SENTENCES[0])
    assert not other.cached and sum(calls) == frames + other.rows and service.extractions == 2


def test_the_cache_keeps_the_most_recently_used_videos(tiny, tmp_path):
    small = VideoMomentService.from_checkpoint(tiny["ckpt"], device="cpu", cache_size=1)
    small.answer(tiny["video"], SENTENCES[0])
    small.answer(tiny["other_video"], SENTENCES[0])   # evicts the first video
    assert small.answer(tiny["other_video"], SENTENCES[1]).cached
    assert not small.answer(tiny["video"], SENTENCES[1]).cached and small.extractions == 3


def test_bad_uploads_are_refused_with_a_message_naming_the_upload(tiny, service, tmp_path):
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("these are notes, not a video\n" * 20)
    audio_only = tmp_path / "audio_only.mkv"
    write_without_video_frames(str(audio_only), with_video_stream=False)
    no_frames = tmp_path / "no_frames.mkv"
    write_without_video_frames(str(no_frames))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    big = tmp_path / "big.webm"
    big.write_bytes(os.urandom(int(1.5 * 2**20)))
    cases = [(str(not_video), SENTENCES[0], "notes.mp4: cannot open as a video"),
             (str(audio_only), SENTENCES[0], "audio_only.mkv: has no video stream"),
             (str(no_frames), SENTENCES[0], "no_frames.mkv: holds no decodable frame"),
             (str(empty), SENTENCES[0], "empty.mp4: the file is empty"),
             (str(big), SENTENCES[0], "big.webm: 1.5 MB is over this server's limit of 1 MB per video"),
             (None, SENTENCES[0], "upload a video file first"),
             (tiny["video"], " \n ", "type a sentence")]
    for path, text, message in cases:
        with pytest.raises(WebInputError, match=message) as info:
            service.answer(path, text)
        assert str(tmp_path) not in str(info.value), "the message shows the server's temporary path"


def test_a_checkpoint_without_a_video_extractor_is_refused(tiny):
    predictor = Predictor.from_checkpoint(tiny["ckpt"], opts=["INPUT.VIDEO.ENCODER", ""], device="cpu")
    with pytest.raises(WebConfigError, match=r"model_1e.pth: its config names no video feature extractor "
                                             r"\(INPUT.VIDEO.ENCODER is empty\)"):
        VideoMomentService(predictor, checkpoint_name="model_1e.pth")
    assert VideoMomentService(predictor, encoder=tiny["clip"]).encoder_name == tiny["clip"]  # --encoder names one


def test_mmn_web_refuses_at_start_in_one_line(tiny):
    """The CLI exits with status 2 and one error line, before serving anything."""
    pytest.importorskip("gradio", reason="mmn-web needs Gradio: pip install -e '.[web]'")
    def mmn_web(*args):
        return subprocess.run([sys.executable, "-m", "mmn.web", "--ckpt", tiny["ckpt"], "--device", "cpu", *args],
                              cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)

    proc = mmn_web("INPUT.VIDEO.ENCODER", "")
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("mmn-web: error: model_1e.pth: its config names no video feature extractor "
                                "(INPUT.VIDEO.ENCODER is empty)")
    assert "Traceback" not in proc.stderr and "Running on" not in proc.stdout
    proc = mmn_web("--topk", "0")
    assert proc.returncode == 2 and "mmn-web: error: --topk must be between 1 and 10, got 0" in proc.stderr


# ------------------------------------------------------------------------------------------------ plots
def test_the_timeline_layout_maps_pixels_to_its_bars_and_times(tmp_path):
    from PIL import Image

    from mmn.visualization import plot_saliency, plot_timeline

    top = [(2.0, 5.0, 0.9), (10.0, 14.0, 0.5), (0.0, 20.0, 0.1)]
    path = str(tmp_path / "timeline.png")
    layout = plot_timeline(20.0, path, top=top, title="t", size=(7.0, 2.0), dpi=110)
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (layout.height, layout.width)
    for k, (left, top_px, right, bottom) in enumerate(layout.bars):
        x, y = int((left + right) / 2), int((top_px + bottom) / 2)
        r, g, b = pixels[y, x]
        assert b > r + 40, f"bar {k + 1} is not under its box"      # a blue bar, not the white background
        assert layout.bar_at(x, y) == k
        assert layout.time_at(left) == pytest.approx(top[k][0], abs=20.0 / (layout.axes[2] - layout.axes[0]))
    r, g, b = pixels[int((layout.bars[0][1] + layout.bars[0][3]) / 2), int(layout.bars[0][2]) + 3]
    assert min(r, g, b) > 200, "the first bar runs past its box"
    assert layout.bar_at(layout.axes[0] + 1, layout.axes[1] + 1) is None
    assert layout.time_at(layout.axes[0]) == 0.0 and layout.time_at(layout.axes[2]) == 20.0
    assert layout.time_at(-5) == 0.0 and layout.time_at(10**6) == 20.0
    # the saliency curve: clips of 2 s, the last one ends at the duration
    path = str(tmp_path / "saliency.png")
    layout = plot_saliency(np.array([0.0, 1.0, 0.0]), 5.0, path, clip_seconds=2.0, dpi=110)
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    column = pixels[:, int(layout.axes[0] + (layout.axes[2] - layout.axes[0]) * 3.0 / 5.0)]  # t = 3 s: clip 1
    orange = np.flatnonzero((column[:, 0] > 200) & (column[:, 2] < 100))
    assert orange.size and orange.min() < layout.axes[1] + 0.3 * (layout.axes[3] - layout.axes[1])  # high


# ------------------------------------------------------------------------------------------------ handlers
@pytest.fixture()
def page(service, tmp_path):
    pytest.importorskip("gradio")
    from mmn.web.app import MomentPage

    made = MomentPage(service, work_dir=str(tmp_path / "page"))
    os.makedirs(made.work_dir)
    return made


def unpack(result):
    table, chooser, timeline, saliency, score_map, status, state, moments_json = result
    return types.SimpleNamespace(table=table, chooser=chooser, timeline=timeline, saliency=saliency,
                                 score_map=score_map, status=status, state=state, json=moments_json)


def test_the_page_shows_the_moments_plots_and_json(tiny, page):
    out = unpack(page.find_moments(tiny["video"], f"{SENTENCES[0]}\n{SENTENCES[3]}", 4))
    expected = Predictor.from_checkpoint(tiny["ckpt"], device="cpu").predict_video(
        tiny["video"], [SENTENCES[0], SENTENCES[3]], topk=4)
    rows = [[q, p.sentence if r == 1 else "", r, f"{m.start:.2f}", f"{m.end:.2f}", f"{m.score:.4f}"]
            for q, p in enumerate(expected, 1) for r, m in enumerate(p.moments, 1)]
    assert out.table == rows
    assert out.timeline["visible"] and os.path.isfile(out.timeline["value"])
    assert out.score_map["visible"] and os.path.isfile(out.score_map["value"])  # MMN scores a moment map
    assert not out.saliency["visible"]                                         # and has no saliency head
    assert out.chooser["visible"] and out.chooser["value"] == 0 and len(out.chooser["choices"]) == 2
    assert "query.webm" in out.status and "8.0 s" in out.status
    written = json.load(open(out.json["value"]))
    assert [q["moments"] for q in written["queries"]] == [[[m.start, m.end, m.score] for m in p.moments]
                                                          for p in out_predictions(out.state)]
    # the sentence chooser draws the other sentence; choosing the shown one changes nothing
    timeline, _, _, state = page.show_sentence(1, out.state)
    assert timeline["value"] != out.timeline["value"] and state["layouts"]["timeline"][0] == 1
    assert all(update == {"__type__": "update"} for update in page.show_sentence(1, state)[:3])


def out_predictions(state):
    return [types.SimpleNamespace(moments=[Moment(*m) for m in r["moments"]]) for r in state["records"]]


def test_progress_names_the_hashing_the_frames_and_the_prediction(page, tmp_path):
    video = write_test_video(tmp_path / "fresh.webm", 5.0)  # not in the cache: 10 rows at 2 fps
    heard = []

    def progress(fraction, desc):  # what gr.Progress is called with
        heard.append((fraction, desc))

    out = unpack(page.find_moments(video, SENTENCES[0], 3, progress=progress))
    assert out.table, out.status
    assert heard[0] == (0.0, "hashing the file")
    assert (1.0, "decoding and encoding frames: 10 / 10") in heard
    assert heard[-1] == (None, "predicting 1 sentence(s)")
    frames = [fraction for fraction, desc in heard if desc.startswith("decoding")]
    assert frames == sorted(frames) and frames[0] == 0.0


def test_clicks_seek_the_player(tiny, page):
    out = unpack(page.find_moments(tiny["video"], f"{SENTENCES[0]}\n{SENTENCES[1]}", 3))
    records = out.state["records"]
    # the 5th row is the 2nd moment of the 2nd sentence
    player, chooser = page.select_row(out.state, types.SimpleNamespace(index=[4, 3]))
    assert player["playback_position"] == records[1]["moments"][1][0] and chooser["value"] == 1
    # a click on the timeline's 2nd bar seeks to that moment's start, elsewhere to the time under the click
    layout = out.state["layouts"]["timeline"][1]
    left, top, right, bottom = layout.bars[1]
    player = page.select_timeline(out.state, types.SimpleNamespace(index=[(left + right) / 2, (top + bottom) / 2]))
    assert player["playback_position"] == round(records[0]["moments"][1][0], 3)
    x = layout.axes[0] + 0.75 * (layout.axes[2] - layout.axes[0])
    player = page.select_timeline(out.state, types.SimpleNamespace(index=[x, layout.axes[1] + 1]))
    assert player["playback_position"] == pytest.approx(0.75 * 8.0, abs=1e-3)
    assert page.select_saliency(out.state, types.SimpleNamespace(index=[x, 10])) == {"__type__": "update"}


def test_bad_input_on_the_page_is_a_message_and_the_page_goes_on(tiny, page, tmp_path, monkeypatch):
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video\n" * 50)
    audio_only = tmp_path / "audio_only.mkv"
    write_without_video_frames(str(audio_only), with_video_stream=False)
    big = tmp_path / "big.webm"
    big.write_bytes(os.urandom(int(1.2 * 2**20)))
    for path, text, message in [(str(not_video), SENTENCES[0], "notes.mp4: cannot open as a video"),
                                (str(audio_only), SENTENCES[0], "audio_only.mkv: has no video stream"),
                                (str(big), SENTENCES[0], "over this server&#x27;s limit of 1 MB"),
                                (tiny["video"], "   ", "type a sentence")]:
        out = unpack(page.find_moments(path, text, 5))
        assert message in out.status and 'class="mmn-error"' in out.status
        assert out.table == [] and out.state is None and not out.timeline["visible"] and not out.json["visible"]
    # a bug is one line on the page (its traceback goes to the log), and the page still answers afterwards
    monkeypatch.setattr(page.service.predictor, "predict", lambda *a, **k: 1 / 0)
    out = unpack(page.find_moments(tiny["video"], SENTENCES[0], 5))
    assert "internal error (ZeroDivisionError)" in out.status and "Traceback" not in out.status
    monkeypatch.undo()
    assert unpack(page.find_moments(tiny["video"], SENTENCES[0], 5)).table


class _SaliencyPrediction(Prediction):
    """What a model with a highlight head (Moment-DETR) returns: a Prediction with a per-clip saliency."""

    def __init__(self, sentence, moments, saliency):
        super().__init__(sentence, moments, None)
        self.saliency = saliency


def test_the_saliency_curve_shows_when_a_prediction_carries_one(tiny, page, monkeypatch):
    rows = 16  # the test video's feature rows: one saliency value per 0.5 s clip
    saliency = torch.zeros(rows)
    saliency[6:9] = 1.0

    def predict(features, duration, sentences, topk=5):
        return [_SaliencyPrediction(s, [Moment(3.0, 4.5, 0.8), Moment(0.0, 2.0, 0.1)], saliency) for s in sentences]

    monkeypatch.setattr(page.service.predictor, "predict", predict)
    out = unpack(page.find_moments(tiny["video"], SENTENCES[0], 5))
    assert out.saliency["visible"] and os.path.isfile(out.saliency["value"])
    assert not out.score_map["visible"]  # no 2D map
    layout = out.state["layouts"]["saliency"][1]
    assert layout.time_range == (0.0, 8.0)
    player = page.select_saliency(out.state, types.SimpleNamespace(index=[(layout.axes[0] + layout.axes[2]) / 2, 20]))
    assert player["playback_position"] == pytest.approx(4.0, abs=1e-3)
    assert out.state["records"][0]["saliency"].tolist() == saliency.tolist()


# ------------------------------------------------------------------------------------------------ browser
@pytest.fixture(scope="module")
def chromium():
    """(chromium, chromedriver) paths, or a pytest.skip saying what is missing (before anything is trained)."""
    pytest.importorskip("gradio", reason="the page needs Gradio: pip install -e '.[web]'")
    pytest.importorskip("selenium", reason="the browser test needs selenium: pip install selenium")
    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                    None)
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("no Chromium and chromedriver on PATH: apt-get install chromium chromium-driver (as .ci/run does)")
    return chromium, driver


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(tiny, tmp_path):
    """``mmn-web`` on a free local port (1 MB upload limit), until the test ends."""
    port = _free_port()
    log = open(tmp_path / "server.log", "w+")
    env = dict(ENV, GRADIO_TEMP_DIR=str(tmp_path / "gradio"))
    proc = subprocess.Popen([sys.executable, "-m", "mmn.web", "--ckpt", tiny["ckpt"], "--device", "cpu", "--port",
                             str(port), "--max-upload-mb", "1"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    try:
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"mmn-web exited with {proc.returncode}:\n{log.read()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("mmn-web did not answer within 300 s")
            time.sleep(1)
        yield types.SimpleNamespace(url=url, log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture()
def browser(chromium, monkeypatch):
    chromium, driver_path = chromium
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium never looks for a driver or browser to download
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1100",
                "--hide-scrollbars", "--mute-audio", "--no-first-run", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
                # nothing but this machine: any other address goes to a closed local port
                "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=127.0.0.1;localhost"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.slow
def test_the_page_in_a_real_browser(chromium, tiny, server, browser, tmp_path):
    """Upload a video, ask a sentence: the moments table (= Predictor.predict_video on the same file), the
    timeline and the score map appear; a click on a row or a bar seeks the player; bad input is a message
    and the page goes on serving."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser

    def wait(condition, timeout=120, what=""):
        try:
            return WebDriverWait(d, timeout, poll_frequency=0.25).until(lambda _: condition())
        except Exception:
            d.save_screenshot(str(tmp_path / "failure.png"))
            server.log.seek(0)
            pytest.fail(f"timed out waiting for {what}; screenshot {tmp_path / 'failure.png'}; server log:\n"
                        f"{server.log.read()[-3000:]}")

    def find(css):
        return d.find_elements(By.CSS_SELECTOR, css)

    def status():
        """(answer number, text) of the status line; (None, "") before the first answer."""
        shown = find("#mmn-status .mmn-status-text")
        return (shown[0].get_attribute("data-answer"), shown[0].text) if shown else (None, "")

    def upload(path):
        clear = find("#mmn-video button[aria-label='Clear']")
        if clear:
            clear[0].click()
            wait(lambda: find("#mmn-video input[type=file]"), 30, "the emptied upload area")
        find("#mmn-video input[type=file]")[0].send_keys(path)

    def ask(text):
        box = find("#mmn-sentences textarea")[0]
        box.clear()
        box.send_keys(text)
        before = status()[0]
        find("#mmn-run")[0].click()
        wait(lambda: status()[0] != before, 180, f"an answer to {text!r}")
        return status()[1]

    def table():
        cells = find("#mmn-moments [role=gridcell][data-row]")
        rows = {}
        for cell in cells:
            rows.setdefault(int(cell.get_attribute("data-row")), {})[int(cell.get_attribute("data-col"))] = cell.text
        return [[row[c] for c in sorted(row)] for _, row in sorted(rows.items())]

    def player_time():
        return d.execute_script("const v = document.querySelector('#mmn-video video'); return v ? v.currentTime : null")

    d.get(server.url)
    wait(lambda: find("#mmn-run") and find("#mmn-video input[type=file]"), 120, "the page")

    # ---- a video and a sentence
    upload(tiny["video"])
    wait(lambda: find("#mmn-video video"), 60, "the uploaded video in the player")
    text = ask(SENTENCES[0])
    assert "query.webm" in text and "8.0 s" in text and "⚠" not in text, text
    wait(lambda: find("#mmn-timeline img") and find("#mmn-score-map img"), 60, "the timeline and the score map")
    expected = Predictor.from_checkpoint(tiny["ckpt"], device="cpu").predict_video(tiny["video"], [SENTENCES[0]])
    moments = expected[0].moments
    assert len(moments) == 5
    wait(lambda: len(table()) == 5, 30, "five table rows")
    assert table() == [["1", SENTENCES[0] if r == 1 else "", str(r), f"{m.start:.2f}", f"{m.end:.2f}", f"{m.score:.4f}"]
                       for r, m in enumerate(moments, 1)]
    link = wait(lambda: [a.get_attribute("href") for a in find("#mmn-json a[href]")], 30, "the JSON link")[0]
    with urllib.request.urlopen(link, timeout=30) as response:
        served = json.load(response)
    assert [v for m in served["queries"][0]["moments"] for v in m] == pytest.approx(moments_of(expected), abs=1e-6)

    # ---- click-to-seek: a table row, then a bar of the timeline (each to a time the player is not at)
    row = next(r for r, m in enumerate(moments) if abs(m.start - player_time()) > 0.1)
    find(f"#mmn-moments [data-testid='cell-{row}-3']")[0].click()
    wait(lambda: player_time() == pytest.approx(moments[row].start, abs=0.05), 30, f"the player at moment {row + 1}")
    from mmn.web.figures import query_record, render_query

    image = find("#mmn-timeline img")[0]
    natural = d.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", image)
    layout = render_query(query_record(expected[0]), 8.0, str(tmp_path), "same").timeline_layout  # the page's drawing
    assert natural == [layout.width, layout.height]

    def click_bar(k):
        left, top, right, bottom = layout.bars[k]
        x = (left + right) / 2 * image.size["width"] / layout.width
        y = (top + bottom) / 2 * image.size["height"] / layout.height
        ActionChains(d).move_to_element_with_offset(image, int(x - image.size["width"] / 2),
                                                    int(y - image.size["height"] / 2)).click().perform()
        wait(lambda: player_time() == pytest.approx(moments[k].start, abs=0.05), 30, f"the player at moment {k + 1}")

    click_bar(next(k for k, m in enumerate(moments) if abs(m.start - moments[row].start) > 0.1))

    # ---- the screenshot of the page with its results (the README's picture): the player at moment 1
    if abs(moments[0].start - player_time()) > 0.1:
        click_bar(0)
    d.execute_script("document.activeElement && document.activeElement.blur()")
    time.sleep(0.5)
    size = d.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]  # the whole page, below the fold too
    png = d.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": {
        "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})["data"]
    shot = tmp_path / "web_demo.png"
    shot.write_bytes(base64.b64decode(png))
    if os.environ.get("MMN_WEB_SCREENSHOT"):
        shutil.copy(shot, os.environ["MMN_WEB_SCREENSHOT"])

    # ---- bad input: a message on the page, and the server goes on serving
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("these are notes, not a video\n" * 50)
    audio_only = tmp_path / "audio_only.mkv"
    write_without_video_frames(str(audio_only), with_video_stream=False)
    for path, message in [(str(not_video), "notes.mp4: cannot open as a video"),
                          (str(audio_only), "audio_only.mkv: has no video stream")]:
        upload(path)
        time.sleep(1)  # the upload finishing
        text = ask(SENTENCES[0])
        assert message in text and "Traceback" not in text, text
        assert not find("#mmn-timeline img"), "the previous answer's plots are still shown"
    upload(tiny["other_video"])
    wait(lambda: find("#mmn-video video"), 60, "the uploaded video in the player")
    assert "type a sentence" in ask("   ")
    assert "other.webm" in ask(SENTENCES[1])  # served after all of the above
    # over the size limit: Gradio refuses the upload itself (the server never stores it) with a notice
    big = tmp_path / "big.webm"
    big.write_bytes(os.urandom(int(1.5 * 2**20)))
    upload(str(big))
    notice = wait(lambda: [t.text for t in find(".toast-message-text") if t.text], 30, "the size notice")
    assert 'File(s) exceed the maximum allowed size of 1.0 Mb: "big.webm"' in notice, notice
    assert "upload a video file first" in ask(SENTENCES[0])
    upload(tiny["video"])
    wait(lambda: find("#mmn-video video"), 60, "the uploaded video in the player")
    assert "query.webm" in ask(SENTENCES[2])
    server.log.seek(0)
    assert "Traceback" not in server.log.read()
