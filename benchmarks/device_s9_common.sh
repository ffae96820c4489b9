# Sourced by the session-9 device scripts (device_s9_run{1..4}.sh): the results folder R (tarred into $OUT by
# `pack`), the GPU's clocks, and the Mamba speed run whose whole-model sweep picks the scan config (-> $BEST).
set -u
OUT=${OUT:-/tmp/longapps_out}
R=${R:-$OUT/r}
mkdir -p "$R" "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}"
T0=$SECONDS
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv > "$R/gpu.txt" 2>&1

mamba_speed() {  # mamba_speed LIMIT_S SPEED_ARGS... : benchmarks/mamba_gpu.py speed -> $R/mamba_speed.*, $BEST
  local limit=$1; shift
  timeout "$limit" python3 benchmarks/mamba_gpu.py speed "$@" --json "$R/mamba_speed.json" > "$R/mamba_speed.log" 2>&1
  echo "mamba speed rc=$? t=$((SECONDS - T0))" >> "$R/mamba_speed.log"
  BEST=$(python3 -c "import json; d=json.load(open('$R/mamba_speed.json'))['scan_defaults_used']; print(','.join(f'{k}={v}' for k,v in d.items()))" 2>/dev/null)
  echo "best scan: $BEST" >> "$R/mamba_speed.log"
}

mamba_gpu_tests() {  # mamba_gpu_tests LIMIT_S : the Mamba GPU tests with the sweep's config
  LONGAPPS_SCAN="${BEST:-impl=seq}" timeout "$1" python3 -m pytest -q -rfE -p no:cacheprovider --durations=5 \
    tests/test_kernels_mamba_gpu.py > "$R/mamba_gpu_tests.log" 2>&1
  echo "mamba gpu tests rc=$? t=$((SECONDS - T0))" >> "$R/mamba_gpu_tests.log"
}

old_mamba() {  # old_mamba LIMIT_S NAME : mamba-130m 1 x 4,096 from the .snap_old snapshot -> $R/NAME.*
  (cd ../.snap_old && PYTHONPATH="$PWD" timeout "$1" python3 benchmarks/mamba_gpu.py speed --lengths 4096 \
    --skip scan breakdown model_sweep peers --json "$R/$2.json" > "$R/$2.log" 2>&1
   echo "$2 rc=$? t=$((SECONDS - T0))" >> "$R/$2.log")
}

mamba_profile() {  # mamba_profile LIMIT_S : per-kernel GPU time of the 1 x 4,096 graph replay with the sweep's config
  LONGAPPS_SCAN="${BEST:-impl=seq}" timeout "$1" python3 benchmarks/graph_profile.py --only mamba \
    --json "$R/graph_profile.json" > "$R/graph_profile.log" 2>&1
  echo "graph profile rc=$?" >> "$R/graph_profile.log"
}

pack() { tar -C "$(dirname "$R")" -czf "$OUT/results.tar.gz" "$(basename "$R")"; }

mamba_4k_samples() {  # mamba_4k_samples N LIMIT_S : N more 1 x 4,096 rows in fresh processes (shipped defaults)
  local i
  for i in $(seq 1 "$1"); do
    timeout "$2" python3 benchmarks/mamba_gpu.py speed --lengths 4096 --skip model_sweep scan peers breakdown \
      --json "$R/mamba_4k_$i.json" > "$R/mamba_4k_$i.log" 2>&1
    echo "4k sample $i rc=$?" >> "$R/mamba_4k_$i.log"
  done
}

mamba_round() {  # mamba_round SPEED_LIMIT_S N_SAMPLES : speed (whole-model sweep + rows), profile, GPU tests, samples
  mamba_speed "$1" --skip breakdown
  pack
  mamba_profile 80
  pack
  mamba_gpu_tests 170
  pack
  mamba_4k_samples "$2" 60
  pack
}

mamba_round_summary() {  # the lines of mamba_round's logs worth reading in the device reply
  grep -E "best|model 1x4096|ours mamba|ns/token|HF|scan b=|HBM|rc=|^\|" "$R/mamba_speed.log" | tail -40
  head -16 "$R/graph_profile.log" | tail -12
  tail -3 "$R/mamba_gpu_tests.log"
  grep -hE "L=4096: graph|rc=" "$R"/mamba_4k_*.log
}
