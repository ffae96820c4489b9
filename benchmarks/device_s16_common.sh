# Sourced by the session-16 device scripts: session 15's steps (gpu_tests, lf_bench, lf_profile, pack, the carried
# tokenizer) plus the GPU's clocks and power logged every second for the whole call ($R/dmon.log), since the
# GEMM rate of a power-capped card depends on the data's bits (KINDS.md: zeros 894 vs random 788 TFLOP/s).
source benchmarks/device_s15_common.sh
nvidia-smi dmon -s pc -d 1 > "$R/dmon.log" 2>&1 &
DMON=$!
mark() { echo "# $(date +%T) $*" >> "$R/dmon.log"; }  # mark STEP : label the dmon rows that follow

gemm_peaks() {  # gemm_peaks LIMIT_S DTYPE... : the encoder's GEMMs at batch 4 and the 8192^3 peak per dtype
  local limit=$1 dt; shift
  for dt in "$@"; do
    mark "gemm $dt"
    timeout "$limit" python3 benchmarks/gemm_algos.py --batch 4 --dtype "$dt" --candidates 4 \
      --json "$R/gemm_$dt.json" > "$R/gemm_$dt.log" 2>&1
    echo "gemm $dt rc=$? t=$((SECONDS - T0))" >> "$R/gemm_$dt.log"
  done
}
