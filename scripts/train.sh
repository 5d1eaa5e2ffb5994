#!/usr/bin/env bash
# Train a model with torchrun (DistributedDataParallel, one process per GPU); a model that trains in one
# process only (its contract's supports_distributed is False, e.g. CNM), or GPUN=1, runs train_net.py directly.
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

distributed=$(python -c "import sys; from mmn.config import load_config; from mmn.modeling import get_model_class
print(int(get_model_class(load_config(sys.argv[1])).supports_distributed))" "$config_file")
if [ "$gpun" = 1 ] || [ "$distributed" = 0 ]; then
    [ "$gpun" = 1 ] || echo "$config_file: this model trains in one process; running train_net.py on GPU ${gpus%%,*}" >&2
    CUDA_VISIBLE_DEVICES=${gpus%%,*} exec python train_net.py --config-file "$config_file" OUTPUT_DIR "$output_dir" "$@"
fi
CUDA_VISIBLE_DEVICES=$gpus torchrun --nproc_per_node=$gpun --nnodes=$nnodes --node_rank=$node_rank \
    --master_addr=$master_addr --master_port=$master_port \
    train_net.py --config-file $config_file OUTPUT_DIR $output_dir "$@"
