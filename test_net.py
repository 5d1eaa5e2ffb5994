"""Evaluate a checkpoint (ours or a released official one) on the config's test split.

    python test_net.py --config-file configs/pool_charades_16x16_k5l8.yaml --ckpt best_charades.pth

A bad config, annotation, feature file or checkpoint is reported in one line (exit status 2);
``--debug`` (or MMN_DEBUG=1) shows its traceback.
"""
from mmn.engine.launch import argument_parser, setup, test
from mmn.utils.errors import run_cli


def main(argv=None):
    args = argument_parser("Evaluate an MMN checkpoint", need_ckpt=True).parse_args(argv)
    cfg, device = setup(args.config_file, args.opts)
    test(cfg, device, args.ckpt, args.out, vis=args.vis)


if __name__ == "__main__":
    run_cli(main, prog="test_net.py")
