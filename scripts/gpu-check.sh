#!/bin/sh
# scripts/gpu-check.sh: lldiff's checks on a machine with an NVIDIA GPU, nvcc
# and cmake, but no Go, in one run of at most about 8 minutes.
#
# Where Go is:   make gpu-bundle      (PORTABLE=1 bin/lldiff, bin/llamacpp.test,
#                                      bin/benchtable, build/ollama-src)
# Carry bin/ and build/ollama-src with the checkout, then on the GPU machine:
#                scripts/gpu-check.sh
#
# It builds ggml's CUDA backend (make cuda, from build/ollama-src), checks that
# lldiff sees the GPU, compares every hook captured with all layers on the GPU
# with the CPU capture and the pure-Go reference (llamacpp.TestGPUAgreement,
# bounds stated there), and measures capture/decode and the bare decode with
# -ngl 999 on the Llama-2-7B shape (Q4_0) and the bench-cpu types, with the
# peak GPU memory, printing the same target table as make bench. Everything
# it writes goes to build/gpu-check (GPU_CHECK_OUT).
set -eu
cd "$(dirname "$0")/.."
T0=$(date +%s)
OUT=${GPU_CHECK_OUT:-build/gpu-check}
mkdir -p "$OUT"
fail() { echo "gpu-check: $*" >&2; exit 1; }
elapsed() { echo "($(( $(date +%s) - T0 )) s)"; }

for c in nvidia-smi nvcc cmake make; do
	command -v $c >/dev/null 2>&1 || fail "$c not found: this script needs an NVIDIA driver (nvidia-smi), the CUDA toolkit (nvcc, or add /usr/local/cuda/bin to PATH) and cmake"
done
for f in bin/lldiff bin/llamacpp.test bin/benchtable build/ollama-src/CMakeLists.txt; do
	[ -e "$f" ] || fail "$f is missing: run make gpu-bundle where Go is, and carry bin/ and build/ollama-src here"
done

echo "== GPU"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
nvcc --version | tail -1

echo "== CUDA backend $(elapsed)"
if [ ! -e lib/lldiff/libggml-cuda.so ]; then
	make --no-print-directory cuda CUDA_ARCH="${CUDA_ARCH:-native}" > "$OUT/cuda-build.log" 2>&1 || { tail -40 "$OUT/cuda-build.log"; fail "make cuda failed (log: $OUT/cuda-build.log)"; }
fi
ls lib/lldiff
LLDIFF_BACKEND_DIR=$(pwd)/lib/lldiff
export LLDIFF_BACKEND_DIR

echo "== devices $(elapsed)"
bin/lldiff devices | tee "$OUT/devices.txt"
grep -q CUDA "$OUT/devices.txt" || fail "lldiff does not list a CUDA device (see $OUT/devices.txt)"

echo "== CPU vs GPU agreement $(elapsed)"
status=0
(cd llamacpp && LLDIFF_REQUIRE_GPU=1 ../bin/llamacpp.test -test.run '^TestGPUAgreement$' -test.v -test.timeout 4m) > "$OUT/agreement.txt" 2>&1 || status=1
grep -E '^\s+(---|gpu_test|\s+[a-z_]+ +GPU vs)' "$OUT/agreement.txt" || true
[ $status = 0 ] || echo "gpu-check: agreement FAILED (full log: $OUT/agreement.txt)"

echo "== speed and memory, -ngl 999 $(elapsed)"
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$OUT/memory.txt" &
SMI=$!
(cd llamacpp && LLDIFF_BENCH_NGL=999 LLDIFF_BENCH_PRESET=llama2-7b \
	../bin/llamacpp.test -test.run NONE -test.bench '^(BenchmarkCaptureOverhead|BenchmarkDecodeTypes)$' \
	-test.benchtime "${BENCHTIME:-3x}" -test.timeout 5m) > "$OUT/bench.txt" 2>&1 || status=1
kill $SMI 2>/dev/null || true
grep -E '^Benchmark' "$OUT/bench.txt" || tail -20 "$OUT/bench.txt"
bin/benchtable "$OUT/bench.txt" || status=1
echo "peak GPU memory during the benchmarks: $(sort -n "$OUT/memory.txt" | tail -1) MiB (whole GPU, other processes included)"
echo "== done $(elapsed); results in $OUT"
exit $status
