"""Train a temporal grounding model.

    python train_net.py --config-file configs/pool_charades_16x16_k5l8.yaml [KEY VALUE ...]
    torchrun --nproc_per_node=N train_net.py --config-file ...   # DistributedDataParallel
"""
from mmn.engine.launch import argument_parser, setup, train


def main():
    args = argument_parser("Train MMN").parse_args()
    cfg, device = setup(args.config_file, args.opts)
    train(cfg, device, resume=args.resume)


if __name__ == "__main__":
    main()
