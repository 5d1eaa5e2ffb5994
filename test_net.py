"""Evaluate a checkpoint (ours or a released official one) on the config's test split.

    python test_net.py --config-file configs/pool_charades_16x16_k5l8.yaml --ckpt best_charades.pth
"""
from mmn.engine.launch import argument_parser, setup, test


def main():
    args = argument_parser("Evaluate an MMN checkpoint", need_ckpt=True).parse_args()
    cfg, device = setup(args.config_file, args.opts)
    test(cfg, device, args.ckpt, args.out, vis=args.vis)


if __name__ == "__main__":
    main()
