#!/usr/bin/env bash
# Publish the finished cells of the full-scale grid (configs/experiments/cpu-paper.yaml, issue #12) and write
# its report from the published files alone (metrics, cell and config files, tags-only predictions; no weights):
#   scripts/collect-full-scale.sh [GRID_RUN_DIR]     (default ../lsfa-runs/runs/experiments/cpu-paper)
set -eu
cd "$(dirname "$0")/.."
exec scripts/collect-grid.sh "${1:-../lsfa-runs/runs/experiments/cpu-paper}" docs/results/cpu-paper
