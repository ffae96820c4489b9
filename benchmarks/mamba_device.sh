#!/usr/bin/env bash
# The Mamba retriever's device call (issue 16). Kept for its old name: runs benchmarks/device_s7_mamba.sh
# (speed table + scan sweep, GPU tests, two distillation runs from the CPU-built bundle, quality table).
# Carry: benchmarks/data/mamba_dev (python benchmarks/retrieve_data.py --bundle benchmarks/data/mamba_dev).
#   bash benchmarks/mamba_device.sh [SPEED_S TESTS_S TRAIN_S]
T_SPEED=${1:-${T_SPEED:-110}} T_TESTS=${2:-${T_TESTS:-120}} TRAIN_S=${3:-${TRAIN_S:-125}} \
  exec bash "$(dirname "$0")/device_s7_mamba.sh"
