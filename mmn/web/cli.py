"""``mmn-web``: serve the page for one checkpoint.

    mmn-web --ckpt CKPT [--encoder DIR] [--host 127.0.0.1] [--port 7860] [--max-upload-mb 200]

The checkpoint must name its video extractor (INPUT.VIDEO.ENCODER, set by the configs of mmn-extract
features); one trained on the benchmarks' features is refused at start in one line (exit status 2).
The server listens on 127.0.0.1 unless ``--host`` says otherwise: it has no login, so exposing it lets
anyone who reaches the port upload files and use the machine.
"""
import argparse
import sys

from ..utils.errors import run_cli
from .service import DEFAULT_MAX_UPLOAD_MB, WebConfigError, VideoMomentService

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def argument_parser():
    parser = argparse.ArgumentParser(prog="mmn-web", description="A page that finds the moments of sentences in "
                                     "an uploaded video, with a checkpoint trained on mmn-extract features.")
    parser.add_argument("--ckpt", required=True,
                        help="checkpoint (ours carry their config; official ones need --config)")
    parser.add_argument("--config", default=None, help="YAML config (default: the one stored in the checkpoint)")
    parser.add_argument("--encoder", default=None, metavar="NAME_OR_DIR",
                        help="the CLIP model's from_pretrained name or local directory, instead of the checkpoint's "
                             "INPUT.VIDEO.ENCODER (e.g. a local copy, offline)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 = every interface, "
                             "reachable by anyone on the network: see the README)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                        help=f"largest video file accepted, MB (default {DEFAULT_MAX_UPLOAD_MB})")
    parser.add_argument("--topk", type=int, default=5, help="moments per sentence shown at first (1-10)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: MODEL.DEVICE, auto)")
    parser.add_argument("--no-example", action="store_true", help="do not offer the synthetic example video")
    parser.add_argument("opts", nargs="*", help="config overrides: KEY VALUE ...")
    return parser


def _require_page_packages():
    try:
        import av  # noqa: F401
        import gradio  # noqa: F401
    except ImportError as err:
        raise WebConfigError(f'the page needs {err.name}: pip install -e ".[web]"') from None


def main(argv=None):
    """Parse ``argv``, load the checkpoint and serve the page until interrupted; returns 0."""
    args = argument_parser().parse_intermixed_args(argv)
    if not 1 <= args.topk <= 10:
        raise WebConfigError(f"--topk must be between 1 and 10, got {args.topk}")
    _require_page_packages()
    from .app import CSS, MomentPage, build_blocks, theme, write_example_video

    service = VideoMomentService.from_checkpoint(args.ckpt, args.encoder, args.config, args.opts, device=args.device,
                                                 max_upload_mb=args.max_upload_mb)
    page = MomentPage(service, default_topk=args.topk)
    try:
        example = None if args.no_example else write_example_video(page.work_dir)
        blocks = build_blocks(page, example)
        if args.host not in LOOPBACK_HOSTS:
            print(f"mmn-web: warning: listening on {args.host}: anyone who can reach port {args.port} of this machine "
                  "can upload videos and run the model; the page has no login", file=sys.stderr, flush=True)
        try:
            blocks.launch(server_name=args.host, server_port=args.port, max_file_size=service.max_upload_bytes,
                          allowed_paths=[page.work_dir], show_error=False, theme=theme(), css=CSS,
                          footer_links=["gradio", "settings"])
        except OSError as err:
            raise WebConfigError(f"cannot listen on {args.host}:{args.port}: {err}") from None
    finally:
        page.close()
    return 0


def cli():
    """The mmn-web console script: serves until interrupted; one error line and exit status 2 for bad input."""
    return run_cli(main, prog="mmn-web")


if __name__ == "__main__":
    raise SystemExit(cli())
