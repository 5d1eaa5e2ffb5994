#!/usr/bin/env bash
# Train MMN on tacos (torchrun, one process per GPU): scripts/train.sh with the official tacos config.
# Set GPUS / GPUN / MASTER_ADDR / MASTER_PORT / NNODES / NODE_RANK / OUTPUT_DIR as in train.sh; extra
# arguments are config overrides, e.g.  bash scripts/tacos_train.sh SOLVER.MAX_EPOCH 5
exec bash "$(dirname "$0")/train.sh" pool_tacos_128x128_k5l8 "$@"
