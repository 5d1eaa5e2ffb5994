#!/usr/bin/env bash
# Evaluate a checkpoint (ours, or a released official one) on the config's test split.
#   bash scripts/eval.sh [config] [checkpoint] [KEY VALUE ...]
# e.g. bash scripts/eval.sh pool_charades_16x16_k5l8 outputs/pool_charades_16x16_k5l8/best_charades.pth
set -euo pipefail
cd "$(dirname "$0")/.."

config=${1:-pool_charades_16x16_k5l8}
dataset=$(sed -n 's/^ *NAME: *"\{0,1\}\([a-z]*\)"\{0,1\} *$/\1/p' configs/${config}.yaml | tail -1)
ckpt=${2:-outputs/${config}/best_${dataset}.pth}
shift $(( $# > 2 ? 2 : $# ))

python test_net.py --config-file configs/${config}.yaml --ckpt "$ckpt" OUTPUT_DIR outputs/${config} "$@"
