#!/usr/bin/env bash
# Offline CPU demo: synthetic Charades-STA data, MMN trained in minutes, recall table beside two baselines.
#   bash scripts/demo.sh [--output-dir DIR] [KEY VALUE ...]
set -euo pipefail
cd "$(dirname "$0")/.."
python -m mmn.demo "$@"
