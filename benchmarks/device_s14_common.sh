# Sourced by the session-14 device scripts (device_s14_run{1..4}.sh): the session-9 basics (results folder R,
# `pack`, T0) and the Longformer steps of issue 11, each writing $R/<name>.log with an "rc=... t=..." last line.
source benchmarks/device_s9_common.sh

gpu_tests() {  # gpu_tests LIMIT_S NAME [PYTEST ARGS...] : tests/test_kernels_gpu.py -> $R/NAME.log
  local limit=$1 name=$2; shift 2
  timeout "$limit" python3 -m pytest -q -rfE -p no:cacheprovider tests/test_kernels_gpu.py "$@" > "$R/$name.log" 2>&1
  echo "$name rc=$? t=$((SECONDS - T0))" >> "$R/$name.log"
}

lf_bench() {  # lf_bench LIMIT_S NAME [ARGS...] : benchmarks/longformer.py at 4,096 tokens -> $R/NAME.{json,log}
  local limit=$1 name=$2; shift 2
  timeout "$limit" python3 benchmarks/longformer.py --n 4096 --no-variants "$@" --json "$R/$name.json" > "$R/$name.log" 2>&1
  echo "$name rc=$? t=$((SECONDS - T0))" >> "$R/$name.log"
}

lf_host() {  # lf_host LIMIT_S : host time per eager forward and of single calls -> $R/longformer_host.{json,log}
  timeout "$1" python3 benchmarks/longformer_host.py --ops --host-only --json "$R/longformer_host.json" > "$R/longformer_host.log" 2>&1
  echo "longformer host rc=$? t=$((SECONDS - T0))" >> "$R/longformer_host.log"
}
