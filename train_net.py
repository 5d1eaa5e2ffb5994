"""Train a temporal grounding model.

    python train_net.py --config-file configs/pool_charades_16x16_k5l8.yaml [KEY VALUE ...] [--resume [PATH]]
    torchrun --nproc_per_node=N train_net.py --config-file ...   # DistributedDataParallel

A bad config, annotation, feature file or checkpoint is reported in one line (exit status 2);
``--debug`` (or MMN_DEBUG=1) shows its traceback.
"""
from mmn.engine import argument_parser, parse_args, setup, train
from mmn.utils.errors import run_cli


def main(argv=None):
    args = parse_args(argument_parser("Train a temporal grounding model"), argv)
    cfg, device = setup(args.config_file, args.opts)
    train(cfg, device, resume=args.resume, overwrite=args.overwrite)


if __name__ == "__main__":
    run_cli(main, prog="train_net.py")
