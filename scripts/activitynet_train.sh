#!/usr/bin/env bash
# Train MMN on activitynet (torchrun, one process per GPU): scripts/train.sh with the official activitynet config.
# Set GPUS / GPUN / MASTER_ADDR / MASTER_PORT / NNODES / NODE_RANK / OUTPUT_DIR as in train.sh; extra
# arguments are config overrides, e.g.  bash scripts/activitynet_train.sh SOLVER.MAX_EPOCH 5
exec bash "$(dirname "$0")/train.sh" pool_activitynet_64x64_k9l4 "$@"
