// Package ggmlcpu compiles the parts of ggml's CPU backend that the ollama
// module's cgo package leaves out, so that `go build` alone gives the
// backend llama.cpp's own CMake build gives.
//
// Today that is the AMX matrix kernels (ggml-cpu/amx/amx.cpp and mmq.cpp).
// When the compiler targets a CPU with AMX-INT8 and AVX512-VNNI (an Intel
// Xeon from Sapphire Rapids on, with -march=native or
// -march=sapphirerapids), ggml-cpu.cpp registers the AMX buffer type and
// calls ggml_backend_amx_buffer_type(), which lives in those files: without
// them the link fails. On every other target both files compile to nothing.
// ggml decides at run time which tensors the AMX buffer takes (the quantized
// types its kernels support).
//
// The sources are included from the module cache through the
// ggml/include directory that the Makefile puts on CGO_CPPFLAGS; the small
// headers in this directory forward the names amx.cpp includes from
// ggml/src and ggml/src/ggml-cpu, so that no other package's include path
// changes. llamacpp imports this package for its side effect.
package ggmlcpu

// #cgo CPPFLAGS: -I${SRCDIR}/fwd -DNDEBUG
// #cgo CXXFLAGS: -std=c++17
// #cgo linux CPPFLAGS: -D_GNU_SOURCE
// #include "ggmlcpu.h"
import "C"

// AMX reports whether the AMX kernels were compiled in (the compiler
// targeted a CPU with AMX-INT8 and AVX512-VNNI). Whether they run also
// depends on the CPU and kernel at run time.
func AMX() bool { return C.lldiff_amx_compiled() != 0 }
