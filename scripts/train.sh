#!/usr/bin/env bash
# Train MMN with torchrun (DistributedDataParallel, one process per GPU).
# SOLVER.BATCH_SIZE in the config is the GLOBAL batch, split across the gpun processes.
# Extra arguments are passed on as config overrides, e.g.  bash scripts/train.sh pool_charades_16x16_k5l8 SOLVER.MAX_EPOCH 5
set -euo pipefail
cd "$(dirname "$0")/.."

config=${1:?usage: bash scripts/train.sh CONFIG [KEY VALUE ...]}
shift
# GPUs to use and their number
gpus=${GPUS:-0,1}
gpun=${GPUN:-2}
# change these when several runs share a machine (e.g. 127.0.0.2 / 29502)
master_addr=${MASTER_ADDR:-127.0.0.1}
master_port=${MASTER_PORT:-29501}
# several nodes: NNODES=2 NODE_RANK=0|1 MASTER_ADDR=<node 0's address> on each node
nnodes=${NNODES:-1}
node_rank=${NODE_RANK:-0}

# ------------------------ need not change -----------------------------------
config_file=configs/${config}.yaml
output_dir=${OUTPUT_DIR:-outputs/${config}}

CUDA_VISIBLE_DEVICES=$gpus torchrun --nproc_per_node=$gpun --nnodes=$nnodes --node_rank=$node_rank \
    --master_addr=$master_addr --master_port=$master_port \
    train_net.py --config-file $config_file OUTPUT_DIR $output_dir "$@"
