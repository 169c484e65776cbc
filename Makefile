# lldiff build. `make demo` and `make test` work from a fresh clone: they
# download the Go modules (llama.cpp comes with github.com/ollama/ollama) and
# compile llama.cpp through cgo (about 5 minutes the first time on 2 cores,
# then Go's build cache makes it seconds).

GO       ?= go
BIN      := bin/lldiff
PKG      := ./cmd/lldiff
# Tests, benchmarks and the demo use the small models that ship in
# testdata/models (set LLDIFF_SHARED_MODELS to use another folder).
CUDA_ARCH ?= native

UNAME_M := $(shell uname -m)
ifeq ($(PORTABLE),1)
  ifeq ($(UNAME_M),x86_64)
    ARCH_FLAGS := -march=x86-64-v3 -mtune=generic
  else
    ARCH_FLAGS :=
  endif
else
  ifeq ($(UNAME_M),x86_64)
    ARCH_FLAGS := -march=native
  else
    ARCH_FLAGS := -mcpu=native
  endif
endif

# Resolved after `go mod download` has run (recursive variable).
OLLAMA_DIR = $(shell $(GO) list -m -f '{{.Dir}}' github.com/ollama/ollama)
# GGML_USE_CPU_REPACK turns on ggml's repacked (interleaved) Q4_0, Q4_K and
# IQ4_NL kernels, as llama.cpp's own CMake build does and the ollama cgo
# package does not: 1.28x faster Q4_0 decodes here (docs/performance.md).
CPPFLAGS_V = -I$(OLLAMA_DIR)/llama/llama.cpp/include -I$(OLLAMA_DIR)/ml/backend/ggml/ggml/include -DGGML_USE_CPU_REPACK
CFLAGS_V = -O3 $(ARCH_FLAGS)
CGO_ENV = CGO_ENABLED=1 CGO_CPPFLAGS="$(CPPFLAGS_V)" CGO_CFLAGS="$(CFLAGS_V)" CGO_CXXFLAGS="$(CFLAGS_V)"

TEST_FLAGS ?= -timeout 30m
# A count, not a duration: Go 1.26's fuzz coordinator can fail a run whose
# -fuzztime deadline passes while a worker is mid-input ("context deadline
# exceeded" with no crasher, golang/go#75804, fixed in Go 1.27); a count
# has no deadline to race. 20000 inputs take 1-10 s here.
FUZZTIME ?= 20000x

.PHONY: all build deps test test-short demo bench lint fmt fuzz cuda cuda-src clean env link-check test-arm64 test-cluster bench-anchor gpu-bundle gpu-tests

all: build

deps:
	@command -v $(GO) >/dev/null || { echo "lldiff needs Go 1.26 or newer: https://go.dev/dl/"; exit 1; }
	@command -v $${CC:-gcc} >/dev/null || command -v cc >/dev/null || { echo "lldiff needs a C/C++ compiler (gcc/g++ or clang) for cgo: apt-get install build-essential"; exit 1; }
	@$(GO) mod download

# env prints the variables a plain `go build`/`go test` needs, for
# eval "$$(make -s env)".
env: deps
	@echo "export CGO_ENABLED=1 CGO_CPPFLAGS='$(CPPFLAGS_V)' CGO_CFLAGS='$(CFLAGS_V)' CGO_CXXFLAGS='$(CFLAGS_V)'"

build: deps
	@echo "go build -o $(BIN) $(PKG)  (the first build compiles llama.cpp: about 5 minutes on 2 cores)"
	@$(CGO_ENV) $(GO) build -o $(BIN) $(PKG)

test: deps
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null || echo "*** BROWSER TESTS WILL BE SKIPPED: no Chromium on PATH; apt-get install chromium fixes it ***"
	$(CGO_ENV) $(GO) vet ./...
	$(CGO_ENV) $(GO) test $(TEST_FLAGS) ./...
	$(CGO_ENV) $(GO) test -run=NONE -fuzz=FuzzParse -fuzztime=$(FUZZTIME) ./models/

test-short: deps
	$(CGO_ENV) $(GO) test -short $(TEST_FLAGS) ./...

fuzz: deps
	$(CGO_ENV) $(GO) test -run=NONE -fuzz=FuzzParse -fuzztime=10m ./models/

# link-check builds (does not run) bin/lldiff for CPUs other than this one,
# so that a link error on a user's CPU shows up in CI: an AMX Xeon
# (sapphirerapids: AMX, AVX-512), an x86-64 without AVX (x86-64-v2), the
# PORTABLE=1 build, and Linux arm64 with Debian's cross compiler
# (gcc-aarch64-linux-gnu, g++-aarch64-linux-gnu). Each target compiles
# llama.cpp once (about 5 minutes on 2 cores), then Go's cache keeps it.
LINK_DIR := build/link
AARCH64_CC ?= aarch64-linux-gnu-gcc
AARCH64_CXX ?= aarch64-linux-gnu-g++
link-check: deps
	@mkdir -p $(LINK_DIR)
	@set -e; for m in sapphirerapids x86-64-v2 "x86-64-v3 -mtune=generic"; do \
		name=$$(echo $$m | cut -d' ' -f1); \
		echo "link-check: -march=$$m"; \
		CGO_ENABLED=1 CGO_CPPFLAGS="$(CPPFLAGS_V)" CGO_CFLAGS="-O3 -march=$$m" CGO_CXXFLAGS="-O3 -march=$$m" \
			GOARCH=amd64 $(GO) build -o $(LINK_DIR)/lldiff-$$name $(PKG); \
	done
	@command -v $(AARCH64_CC) >/dev/null && command -v $(AARCH64_CXX) >/dev/null || { echo "link-check needs $(AARCH64_CC) and $(AARCH64_CXX): apt-get install gcc-aarch64-linux-gnu g++-aarch64-linux-gnu"; exit 1; }
	@echo "link-check: linux/arm64 ($(AARCH64_CC))"
	@CGO_ENABLED=1 CC=$(AARCH64_CC) CXX=$(AARCH64_CXX) CGO_CPPFLAGS="$(CPPFLAGS_V)" CGO_CFLAGS="-O3" CGO_CXXFLAGS="-O3" \
		GOOS=linux GOARCH=arm64 $(GO) build -o $(LINK_DIR)/lldiff-linux-arm64 $(PKG)
	@file $(LINK_DIR)/lldiff-linux-arm64 2>/dev/null || true
	@echo "link-check: all targets link"

# test-arm64 runs the tests built for linux/arm64 under qemu-user (Debian
# qemu-user): every test of the pure-Go and numeric packages, and of
# llamacpp the ones that check ggml's ARM kernels against independent
# computations (ARM64_LLAMACPP_RUN=. runs all of llamacpp: about 12 minutes
# under emulation on 2 cores, passed on 2026-12-06).
# Go's asynchronous preemption is off under qemu-user: qemu delivers the
# preemption signal (SIGURG) at points where the emulated registers are
# not consistent, and the Go runtime then crashes at random, often in the
# garbage collector (golang/go#36981, open; a CI run on 2026-12-07 died in
# runtime.scanObject in a test that passes natively, under ASan on amd64
# and in 30 further qemu runs). Goroutines are still preempted at function
# calls, so the tests run the same code.
ARM64_TEST_PKGS ?= ./internal/... ./models/... ./diff/ ./lens/ ./contrast/ ./callbacks/ ./analysis/
ARM64_LLAMACPP_RUN ?= ^(TestLoadSharedModels|TestCaptureIdentities|TestLogitsFromResidual|TestAgreementSharedModels|TestDequantizeMatchesGGML|TestLogQuietUnlessVerbose|TestUnembedWritesOnlyDst)$$
ARM64_ENV = CGO_ENABLED=1 CC=$(AARCH64_CC) CXX=$(AARCH64_CXX) CGO_CPPFLAGS="$(CPPFLAGS_V)" CGO_CFLAGS="-O3" CGO_CXXFLAGS="-O3" \
	QEMU_LD_PREFIX=/usr/aarch64-linux-gnu LLDIFF_TEST_EXEC=qemu-aarch64 GODEBUG=asyncpreemptoff=1 GOOS=linux GOARCH=arm64
test-arm64: deps
	@command -v qemu-aarch64 >/dev/null || { echo "test-arm64 needs qemu-aarch64: apt-get install qemu-user"; exit 1; }
	$(ARM64_ENV) $(GO) test -short -exec qemu-aarch64 -timeout 30m $(ARM64_TEST_PKGS)
	$(ARM64_ENV) $(GO) test -short -exec qemu-aarch64 -timeout 30m -run '$(ARM64_LLAMACPP_RUN)' ./llamacpp/

# test-cluster runs docs/cluster.md's Slurm job array (3 tasks and a
# dependent merge) on a throwaway single-node Slurm cluster that
# scripts/cluster/test-slurm.sh starts and stops, and compares the merged
# report with an unsharded run. Needs root and the Debian packages
# slurm-wlm and munge (installs nothing).
test-cluster: build
	./scripts/cluster/test-slurm.sh $(BIN)

demo: build
	@./scripts/demo.sh
	@echo
	@./$(BIN) compare -m "$${LLDIFF_MODEL:-testdata/models/stories260K.gguf}" --answer " she" --answer " he" --json --force --html demo.html \
		"Once upon a time, there was a little girl. One day," "Once upon a time, there was a little boy. One day," >/dev/null
	@echo "The same comparison as a one-file HTML report: $(CURDIR)/demo.html"

bench: build
	@mkdir -p bench
	@./$(BIN) devices | grep '^cpu:' || true
	$(CGO_ENV) $(GO) test -run=NONE -bench=. -benchtime=$${BENCHTIME:-3x} -count=$${BENCHCOUNT:-1} -timeout 60m ./... | tee bench/raw.txt
	@$(GO) run ./scripts/benchtable bench/raw.txt $(wildcard bench/anchor.txt)

# bench-anchor builds llama.cpp and ggml's CPU backend with CMake the way
# llama.cpp builds them (native ISA, repacked kernels, llamafile sgemm,
# OpenMP, AMX where the CPU has it) from the same ollama module, and times
# the pp20 decode of the bench-cpu models with it and with lldiff
# (BenchmarkDecodeTypes), in alternating processes, ANCHOR_ROUNDS rounds per
# type (scripts/anchorpair): the median per-round ratio is what make bench's
# decode rows compare. It needs cmake and takes several minutes the first
# time. Results: bench/anchor.txt.
ANCHOR_TYPES ?= Q4_0 Q4_K_M Q8_0 F16
ANCHOR_ROUNDS ?= 9
ANCHOR_THREADS ?= $(shell $(CGO_ENV) $(GO) run ./scripts/cores 2>/dev/null || nproc)
bench-anchor: build
	@command -v cmake >/dev/null || { echo "bench-anchor needs cmake 3.21 or newer: apt-get install cmake"; exit 1; }
	cmake -S scripts/anchor -B build/anchor -DOLLAMA_DIR=$(OLLAMA_DIR) >/dev/null
	cmake --build build/anchor -j $$(nproc) --target lldiff-anchor
	$(CGO_ENV) $(GO) test -c -o build/anchor/llamacpp.test ./llamacpp
	@dir=$${TMPDIR:-/tmp}/lldiff-bench; mkdir -p $$dir; \
	for t in $(ANCHOR_TYPES); do \
		f=$$dir/bench-cpu-$$t.gguf; \
		if [ ! -f $$f ]; then ./$(BIN) synth --preset bench-cpu --type $$t -o $$f >/dev/null || exit 1; fi; \
	done
	$(GO) run ./scripts/anchorpair -threads $(ANCHOR_THREADS) -rounds $(ANCHOR_ROUNDS) -types "$(ANCHOR_TYPES)" -out bench/anchor.txt
	@echo "llama.cpp's pp20 in bench/anchor.txt; make bench compares lldiff's decode with it"

lint: deps
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(CGO_ENV) $(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# make cuda builds ggml's CUDA backend as a run-time library with cmake from
# the same ollama module and puts it in lib/lldiff, where lldiff loads it.
# On a GPU machine without Go, first run `make cuda-src` where Go is, carry
# build/ollama-src (the module's CMakeLists.txt and ggml sources) over, and
# run `make cuda` there: it uses build/ollama-src when it exists.
OLLAMA_SRC ?= $(if $(wildcard build/ollama-src/CMakeLists.txt),build/ollama-src)

cuda:
	@command -v nvcc >/dev/null || { echo "make cuda needs the CUDA toolkit (nvcc not found on PATH): install it, or add /usr/local/cuda/bin to PATH"; exit 1; }
	@command -v cmake >/dev/null || { echo "make cuda needs cmake 3.21 or newer: apt-get install cmake"; exit 1; }
	@src="$(OLLAMA_SRC)"; if [ -z "$$src" ]; then \
		command -v $(GO) >/dev/null || { echo "make cuda needs the ollama module's sources: run make cuda-src on a machine with Go and copy build/ollama-src here"; exit 1; }; \
		$(GO) mod download && src=$$($(GO) list -m -f '{{.Dir}}' github.com/ollama/ollama); fi; \
	echo "building ggml-cuda from $$src for CUDA architectures $(CUDA_ARCH)"; \
	cmake -S "$$src" -B build/cuda -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=$(CUDA_ARCH) \
		-DGGML_CCACHE=OFF -DCMAKE_BUILD_RPATH='$$ORIGIN' && \
	cmake --build build/cuda --target ggml-cuda -j $$(nproc)
	mkdir -p lib/lldiff
	cp -a build/cuda/lib/ollama/libggml-cuda*.so* build/cuda/lib/ollama/libggml-base*.so* lib/lldiff/
	@echo "CUDA backend in lib/lldiff; check with: $(BIN) devices"

# gpu-bundle prepares, where Go is, what scripts/gpu-check.sh runs on a GPU
# machine without Go: a PORTABLE=1 bin/lldiff, the llamacpp test binary and
# benchtable (stripped), and build/ollama-src. Carry bin/ and build/ollama-src
# (about 45 MB).
gpu-bundle:
	@$(MAKE) --no-print-directory PORTABLE=1 build gpu-tests cuda-src

gpu-tests: deps
	$(CGO_ENV) $(GO) test -c -ldflags='-s -w' -o bin/llamacpp.test ./llamacpp
	$(CGO_ENV) $(GO) build -ldflags='-s -w' -o bin/benchtable ./scripts/benchtable

# cuda-src copies what make cuda needs from the Go module cache.
cuda-src: deps
	rm -rf build/ollama-src && mkdir -p build/ollama-src/ml/backend/ggml
	cp $(OLLAMA_DIR)/CMakeLists.txt build/ollama-src/
	cp -r $(OLLAMA_DIR)/ml/backend/ggml/ggml build/ollama-src/ml/backend/ggml/
	chmod -R u+w build/ollama-src
	@# a module of its own, so that ./... in this repository does not build it
	printf 'module ollama-src\n' > build/ollama-src/go.mod
	@du -sh build/ollama-src

clean:
	rm -rf bin bench/raw.txt build
