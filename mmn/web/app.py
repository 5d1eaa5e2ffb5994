"""The page (Gradio Blocks): a video and sentences in; for each sentence its moments as a table, the
timeline (click a moment, or a time, to seek the player there), the saliency curve when the model gives
one and the 2D score map of map models; the moments as JSON.

``MomentPage`` holds the handlers as plain methods (they take and return plain values and Gradio
updates), so that they are tested without a browser; ``build_blocks`` wires them to the components.
Every handler turns bad input into a message on the page: an ``MMNError`` is shown as it is, anything
else (a bug) as one line naming its kind while its traceback goes to the server's log.
"""
import html
import itertools
import json
import logging
import os
import shutil
import tempfile
import uuid

from ..predict import predictions_to_json
from ..utils.checkpoint import atomic_write_text
from ..utils.errors import MMNError, one_line_message
from .figures import query_record, render_query

logger = logging.getLogger("mmn.web")

TABLE_HEADERS = ["#", "sentence", "rank", "start (s)", "end (s)", "score"]
EXAMPLE_SENTENCES = "a yellow square slides down to the right\na blue bar sweeps across the picture"
CSS = """
.gradio-container {max-width: 1320px !important; margin: auto;}
#mmn-status {min-height: 1.6em;}
#mmn-status p {margin: 0.2em 0;}
#mmn-status .mmn-error {color: #b42318; font-weight: 600;}
#mmn-title h2 {margin-bottom: 0.1em;}
"""


def format_table(records):
    """Rows of the moments table: one per moment, the sentence named on its first row."""
    rows = []
    for q, record in enumerate(records, 1):
        for rank, (start, end, score) in enumerate(record["moments"], 1):
            sentence = record["sentence"] if rank == 1 else ""
            rows.append([q, sentence, rank, f"{start:.2f}", f"{end:.2f}", f"{score:.4f}"])
    return rows


def error_html(message):
    """The status line of a refused input (escaped: it may quote a file name)."""
    return f'<p class="mmn-error">\u26a0\ufe0f {html.escape(message)}</p>'


def write_example_video(folder, name="example_synthetic.webm", duration=20.0, rate=10):
    """A synthetic video (moving shapes, VP8 in WebM, which browsers play) for the page's example."""
    from ..video.synthetic import constant_rate_times, write_video

    path = os.path.join(folder, name)
    write_video(path, constant_rate_times(duration, rate), width=320, height=240, codec="libvpx", rate=rate)
    return path


class MomentPage:
    """The page's handlers around a ``VideoMomentService``; its files go to a folder of its own."""

    def __init__(self, service, default_topk=5, work_dir=None):
        self.service = service
        self.default_topk = default_topk
        self.work_dir = work_dir or tempfile.mkdtemp(prefix="mmn-web-")
        self._answers = itertools.count(1)  # numbers the status lines, so a repeated message is a new one

    def close(self):
        shutil.rmtree(self.work_dir, ignore_errors=True)

    # ------------------------------------------------------------------ text
    def header_markdown(self):
        s = self.service
        # a local encoder directory by its name only (its full path says nothing to a visitor)
        encoder = os.path.basename(s.encoder_name.rstrip("/")) if os.path.isdir(s.encoder_name) else s.encoder_name
        return (f"## Where in this video does it happen?\n"
                f"Model **{s.architecture}** ({s.checkpoint_name or 'checkpoint'}) on `{encoder}` image "
                f"features at {s.fps:g} frames/s. Upload a video (up to **{s.max_upload_mb:g} MB**) or pick the "
                f"example, type one sentence per line, and press *Find moments*. Click a row of the table, or a "
                f"moment on the timeline, to play the video from there.")

    def answer_status(self, answer):
        how = ("features from the cache" if answer.cached
               else f"decoded and encoded in {answer.extract_s:.1f} s")
        return (f"<p><b>{html.escape(answer.name)}</b>: {answer.duration:.1f} s, {answer.rows} clips ({how}); "
                f"{len(answer.predictions)} sentence(s).</p>")

    def status_html(self, inner):
        """The status box's content: ``inner`` in a block numbered by answer."""
        return f'<div class="mmn-status-text" data-answer="{next(self._answers)}">{inner}</div>'

    # ------------------------------------------------------------------ handlers
    def find_moments(self, video_path, sentences_text, topk, progress=None):
        """The run button: (table rows, the sentence chooser, the first sentence's timeline, saliency and
        score-map images, the status HTML, the session state, the JSON file); on bad input an empty
        result and the message. ``progress(fraction or None, desc=text)`` is gr.Progress."""
        import gradio as gr

        report = None
        if progress is not None:
            def report(fraction, text):
                progress(fraction, desc=text)
        try:
            answer = self.service.answer(video_path, sentences_text, topk=int(topk or self.default_topk),
                                         name=os.path.basename(video_path or ""), progress=report)
            records = [query_record(p) for p in answer.predictions]
            state = {"name": answer.name, "digest": answer.digest, "duration": answer.duration, "rows": answer.rows,
                     "records": records, "layouts": {}}
            figures = self._figures(state, 0)
            json_dir = os.path.join(self.work_dir, uuid.uuid4().hex[:12])  # a folder per answer: its own name
            os.makedirs(json_dir)
            json_path = os.path.join(json_dir, f"{os.path.splitext(answer.name)[0] or 'video'}_moments.json")
            atomic_write_text(json.dumps(predictions_to_json(answer.predictions, answer.duration, answer.name),
                                         indent=1), json_path)
            choices = [(f"{q}. {r['sentence']}", q - 1) for q, r in enumerate(records, 1)]
            return (format_table(records), gr.update(choices=choices, value=0, visible=len(records) > 1), *figures,
                    self.status_html(self.answer_status(answer)), state, gr.update(value=json_path, visible=True))
        except MMNError as err:
            message = one_line_message(err)
        except Exception as err:  # a bug: its traceback to the server log, one line to the page
            logger.exception("find_moments failed")
            message = f"internal error ({type(err).__name__}); the server's log has the details"
        return ([], gr.update(choices=[], value=None, visible=False), *self._no_figures(),
                self.status_html(error_html(message)), None, gr.update(value=None, visible=False))

    def show_sentence(self, index, state):
        """The sentence chooser: that sentence's figures (unchanged when they are shown already) and the state."""
        import gradio as gr

        if not state or index is None:
            return (*self._no_figures(), state)
        if state["layouts"].get("timeline", (None,))[0] == int(index):
            return (gr.update(), gr.update(), gr.update(), state)
        return (*self._figures(state, int(index)), state)

    def select_row(self, state, evt):
        """A click on a table row: (the player's update seeking to the moment's start, that sentence's index)."""
        import gradio as gr

        row = self._row_of(state, evt)
        if row is None:
            return gr.update(), gr.update()
        q, rank = row
        start = state["records"][q]["moments"][rank][0]
        return gr.update(playback_position=start), gr.update(value=q)

    def select_timeline(self, state, evt):
        """A click on the timeline: seek to the start of the moment clicked, or to the time clicked."""
        return self._seek_on(state, "timeline", evt)

    def select_saliency(self, state, evt):
        """A click on the saliency curve: seek to the time clicked."""
        return self._seek_on(state, "saliency", evt)

    # ------------------------------------------------------------------ helpers
    def _row_of(self, state, evt):
        """(sentence index, rank index) of the table row of a select event, None when it is not one."""
        if not state or evt is None or evt.index is None:
            return None
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        k = 0
        for q, record in enumerate(state["records"]):
            if row < k + len(record["moments"]):
                return q, row - k
            k += len(record["moments"])
        return None

    def seek_time(self, state, plot, x, y):
        """The time to seek to for a click at pixel (x, y) of ``plot`` ("timeline" or "saliency") of the
        shown sentence: a moment bar's start, else the time under x; None without a plot."""
        shown = (state or {}).get("layouts", {})
        if plot not in shown:
            return None
        q, layout = shown[plot]
        bar = layout.bar_at(x, y)
        if bar is not None:
            return state["records"][q]["moments"][bar][0]
        return layout.time_at(x)

    def _seek_on(self, state, plot, evt):
        import gradio as gr

        if evt is None or not isinstance(evt.index, (list, tuple)) or len(evt.index) != 2:
            return gr.update()
        time_s = self.seek_time(state, plot, *evt.index)
        return gr.update() if time_s is None else gr.update(playback_position=round(time_s, 3))

    def _figures(self, state, q):
        """(timeline, saliency, score map) image updates of sentence ``q``; records their layouts in the state."""
        import gradio as gr

        record = state["records"][q]
        clip_seconds = None
        if record["saliency"] is not None and len(record["saliency"]) == state["rows"]:
            clip_seconds = 1.0 / self.service.fps  # one value per feature row: the rows' own clips
        stem = f"{state['digest'][:12]}_{q}_{uuid.uuid4().hex[:6]}"
        figures = render_query(record, state["duration"], self.work_dir, stem, clip_seconds)
        state["layouts"] = {"timeline": (q, figures.timeline_layout)}
        if figures.saliency_layout is not None:
            state["layouts"]["saliency"] = (q, figures.saliency_layout)
        return (gr.update(value=figures.timeline, visible=True),
                gr.update(value=figures.saliency, visible=figures.saliency is not None),
                gr.update(value=figures.score_map, visible=figures.score_map is not None))

    @staticmethod
    def _no_figures():
        import gradio as gr

        return tuple(gr.update(value=None, visible=False) for _ in range(3))


def build_blocks(page, example_video=None):
    """The Gradio Blocks of ``page``; ``example_video``: a file offered as the example."""
    import gradio as gr

    with gr.Blocks(title="mmn: moments in a video", analytics_enabled=False, delete_cache=(3600, 86400)) as blocks:
        state = gr.State(None)
        gr.Markdown(page.header_markdown(), elem_id="mmn-title")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5):
                video = gr.Video(label="video", sources=["upload"], elem_id="mmn-video", height=330)
                sentences = gr.Textbox(label="sentences, one per line", lines=3, max_lines=12, elem_id="mmn-sentences",
                                       placeholder="a person opens the door.")
                with gr.Row():
                    topk = gr.Slider(1, 10, value=page.default_topk, step=1, label="moments per sentence",
                                     elem_id="mmn-topk", scale=3)
                    run = gr.Button("Find moments", variant="primary", elem_id="mmn-run", scale=2)
                status = gr.HTML("", elem_id="mmn-status")
                moments_json = gr.File(label="moments (JSON)", visible=False, elem_id="mmn-json")
                if example_video:
                    gr.Examples([[example_video, EXAMPLE_SENTENCES]], inputs=[video, sentences],
                                label="example (a synthetic video)", elem_id="mmn-example")
            with gr.Column(scale=7):
                table = gr.Dataframe(headers=TABLE_HEADERS, datatype=["number", "str", "number", "str", "str", "str"],
                                     label="moments (click a row to play it)", interactive=False, wrap=True,
                                     column_widths=["6%", "40%", "9%", "15%", "15%", "15%"], elem_id="mmn-moments",
                                     max_height=320)
                chooser = gr.Dropdown(label="plots of sentence", choices=[], type="value", visible=False,
                                      elem_id="mmn-sentence")
                # the plots carry their own titles and axes: no component label over them
                timeline = gr.Image(label="timeline (click a moment to play it)", show_label=False, type="filepath",
                                    interactive=False, visible=False, elem_id="mmn-timeline", buttons=["download"])
                saliency = gr.Image(label="saliency per clip (click to play from there)", show_label=False,
                                    type="filepath", interactive=False, visible=False, elem_id="mmn-saliency",
                                    buttons=["download"])
                score_map = gr.Image(label="2D moment score map", show_label=False, type="filepath", interactive=False,
                                     visible=False, elem_id="mmn-score-map", buttons=["download"], height=400)
        figures = [timeline, saliency, score_map]

        def find(video_path, text, k, progress=gr.Progress()):
            return page.find_moments(video_path, text, k, progress)

        def pick_row(current, evt: gr.SelectData):
            return page.select_row(current, evt)

        def pick_timeline(current, evt: gr.SelectData):
            return page.select_timeline(current, evt)

        def pick_saliency(current, evt: gr.SelectData):
            return page.select_saliency(current, evt)

        run.click(find, [video, sentences, topk], [table, chooser, *figures, status, state, moments_json])
        sentences.submit(find, [video, sentences, topk], [table, chooser, *figures, status, state, moments_json])
        chooser.input(page.show_sentence, [chooser, state], [*figures, state])
        table.select(pick_row, [state], [video, chooser]).then(page.show_sentence, [chooser, state], [*figures, state])
        timeline.select(pick_timeline, [state], [video])
        saliency.select(pick_saliency, [state], [video])
    return blocks


def theme():
    """Gradio's Soft theme with the system's fonts (no web font is fetched)."""
    import gradio as gr

    return gr.themes.Soft(primary_hue="blue", font=["system-ui", "Segoe UI", "Helvetica", "Arial", "sans-serif"],
                          font_mono=["ui-monospace", "Menlo", "Consolas", "monospace"])
