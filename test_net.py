"""Evaluate a checkpoint (ours or a released official one) on the config's test split.

    python test_net.py --ckpt outputs/charades/best_charades.pth        # the config stored in the checkpoint
    python test_net.py --config-file configs/pool_charades_16x16_k5l8.yaml --ckpt best_charades.pth  # official ones

A bad config, annotation, feature file or checkpoint is reported in one line (exit status 2);
``--debug`` (or MMN_DEBUG=1) shows its traceback.
"""
from mmn.engine import argument_parser, evaluate_checkpoint, parse_args, setup
from mmn.utils.errors import run_cli


def main(argv=None):
    args = parse_args(argument_parser("Evaluate a temporal grounding checkpoint", need_ckpt=True), argv)
    cfg, device = setup(args.config_file, args.opts, checkpoint=args.ckpt)
    evaluate_checkpoint(cfg, device, args.ckpt, args.out, vis=args.vis)


if __name__ == "__main__":
    run_cli(main, prog="test_net.py")
