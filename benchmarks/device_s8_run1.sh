#!/usr/bin/env bash
# Session 8, device call 1 (<= 560 s), run from a clean snapshot of HEAD:
#   1. Mamba speed (scan sweep incl. the closed-form first pass, add+RMSNorm and conv sweeps, mamba-130m 4k-64k,
#      batch 16, HF slow path, Longformer/BERT peers)            -- alone on the GPU (timings)
#   2. Longformer-base eager (no graph) vs graph vs forward(), batch 1 and 4, host vs wall of one eager call
#                                                                -- alone on the GPU (timings)
#   3. side by side (no timings): NER F1 512 vs 4096 windows on NCBI + the long set; GPU tests (Mamba kernels,
#      attention call path + Longformer, chat on random SmolLM2 weights)
# Carry: .snap (git archive of HEAD + benchmarks/data/ner_s7 + .gpu_assets). Everything -> $OUT/results.tar.gz
source benchmarks/device_s7_common.sh
mkdir -p "$OUT/lf" "$OUT/tests"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw,memory.used --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import os, torch, triton, transformers; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name(), 'cpus', os.cpu_count(), 'load', os.getloadavg())" >> "$OUT/gpu.txt" 2>&1
stamp "mamba speed"
timeout ${T_MAMBA:-170} python3 benchmarks/mamba_gpu.py speed --json "$OUT/mamba/mamba_speed.json" > "$OUT/mamba/speed.log" 2>&1
echo "mamba speed rc=$? t=$((SECONDS - T0))" >> "$OUT/mamba/speed.log"
stamp "longformer"
timeout ${T_LF:-80} python3 benchmarks/longformer.py --batch 1 4 --no-variants --json "$OUT/lf/longformer.json" > "$OUT/lf/longformer.log" 2>&1
echo "longformer rc=$? t=$((SECONDS - T0))" >> "$OUT/lf/longformer.log"
stamp "side by side"
(OUT=$OUT/ner T_F1=${T_F1:-170} bash benchmarks/device_s7_ner.sh f1 > "$OUT/ner/stdout.log" 2>&1) &
P1=$!
(timeout ${T_TESTS:-200} python3 -m pytest -q -rfE -p no:cacheprovider --durations=5 tests/test_kernels_mamba_gpu.py \
   > "$OUT/tests/mamba_gpu_tests.log" 2>&1; echo "mamba gpu tests rc=$?" >> "$OUT/tests/mamba_gpu_tests.log"
 timeout ${T_TESTS2:-150} python3 -m pytest -q -rfE -p no:cacheprovider --durations=5 tests/test_attention_fastpath.py \
   tests/test_kernels_gpu.py -k "(fastpath or plan or api or automatic_graphs or longformer or token_class or graph) and not interpreter" \
   > "$OUT/tests/i11_gpu_tests.log" 2>&1; echo "i11 gpu tests rc=$?" >> "$OUT/tests/i11_gpu_tests.log") &
P2=$!
chat_gpu_tests ${T_CHAT:-200} &
P3=$!
wait $P1 $P2 $P3
stamp "done"
tar -C "$OUT" -czf "$OUT/results.tar.gz" mamba ner chat lf tests pip.log gpu.txt
cat "$OUT/gpu.txt"
grep -E "best|layer op|ours mamba|ns/token|HF Mamba|rc=" "$OUT/mamba/speed.log" | tail -22
grep -E "ours|HF|rc=|^\|" "$OUT/lf/longformer.log" | tail -14
grep -v "^+" "$OUT/ner/stdout.log" | tail -16
tail -3 "$OUT/tests/mamba_gpu_tests.log"; tail -3 "$OUT/tests/i11_gpu_tests.log"; tail -3 "$OUT/chat/chat_gpu_tests.log"
rm -rf "$OUT"/mamba "$OUT"/ner "$OUT"/chat "$OUT"/i11 "$OUT"/lf "$OUT"/tests
