// Package models describes the models lldiff works with: it reads, checks
// and writes GGUF files, says what model a file holds, writes synthetic
// models, and names their activations. It is pure Go: nothing here needs cgo
// or llama.cpp, so a bad file is rejected with a clear error before
// llama.cpp ever sees it.
package models

import (
	"fmt"
	"sort"
	"strings"
)

// GGMLType is a ggml tensor element type (enum ggml_type), as stored in the
// tensor table of a GGUF file.
type GGMLType uint32

// The ggml_type values. Gaps (4, 5, 31-33, 36-38) are types that ggml removed;
// they are not Known.
const (
	F32     GGMLType = 0
	F16     GGMLType = 1
	Q4_0    GGMLType = 2
	Q4_1    GGMLType = 3
	Q5_0    GGMLType = 6
	Q5_1    GGMLType = 7
	Q8_0    GGMLType = 8
	Q8_1    GGMLType = 9
	Q2_K    GGMLType = 10
	Q3_K    GGMLType = 11
	Q4_K    GGMLType = 12
	Q5_K    GGMLType = 13
	Q6_K    GGMLType = 14
	Q8_K    GGMLType = 15
	IQ2_XXS GGMLType = 16
	IQ2_XS  GGMLType = 17
	IQ3_XXS GGMLType = 18
	IQ1_S   GGMLType = 19
	IQ4_NL  GGMLType = 20
	IQ3_S   GGMLType = 21
	IQ2_S   GGMLType = 22
	IQ4_XS  GGMLType = 23
	I8      GGMLType = 24
	I16     GGMLType = 25
	I32     GGMLType = 26
	I64     GGMLType = 27
	F64     GGMLType = 28
	IQ1_M   GGMLType = 29
	BF16    GGMLType = 30
	TQ1_0   GGMLType = 34
	TQ2_0   GGMLType = 35
	MXFP4   GGMLType = 39
)

// qk is QK_K, the number of elements in a K-quant (and most IQ) super-block.
const qk = 256

// typeTraits describes the block layout of one ggml type: a block holds
// blockSize elements in typeSize bytes. The sizes follow the block structs
// of ggml-common.h (block_q4_0 and friends).
type typeTraits struct {
	name      string
	blockSize int
	typeSize  int
}

var ggmlTypes = map[GGMLType]typeTraits{
	F32:  {"F32", 1, 4},
	F16:  {"F16", 1, 2},
	Q4_0: {"Q4_0", 32, 2 + 16},     // d, 32 nibbles
	Q4_1: {"Q4_1", 32, 2 + 2 + 16}, // d, m, 32 nibbles
	Q5_0: {"Q5_0", 32, 2 + 4 + 16}, // d, qh, 32 nibbles
	Q5_1: {"Q5_1", 32, 2 + 2 + 4 + 16},
	Q8_0: {"Q8_0", 32, 2 + 32},     // d, 32 int8
	Q8_1: {"Q8_1", 32, 2 + 2 + 32}, // d, s, 32 int8
	Q2_K: {"Q2_K", qk, qk/16 + qk/4 + 2 + 2},
	Q3_K: {"Q3_K", qk, qk/8 + qk/4 + 12 + 2},
	Q4_K: {"Q4_K", qk, 2 + 2 + 12 + qk/2},
	Q5_K: {"Q5_K", qk, 2 + 2 + 12 + qk/8 + qk/2},
	Q6_K: {"Q6_K", qk, qk/2 + qk/4 + qk/16 + 2},
	Q8_K: {"Q8_K", qk, 4 + qk + qk/16*2},
	// IQ types: see block_iq* in ggml-common.h.
	IQ2_XXS: {"IQ2_XXS", qk, 2 + qk/8*2},
	IQ2_XS:  {"IQ2_XS", qk, 2 + qk/8*2 + qk/32},
	IQ3_XXS: {"IQ3_XXS", qk, 2 + 3*qk/8},
	IQ1_S:   {"IQ1_S", qk, 2 + qk/8 + qk/32*2},
	IQ4_NL:  {"IQ4_NL", 32, 2 + 16},
	IQ3_S:   {"IQ3_S", qk, 2 + qk/4 + qk/32 + qk/8 + qk/64},
	IQ2_S:   {"IQ2_S", qk, 2 + qk/4 + qk/32 + qk/32},
	IQ4_XS:  {"IQ4_XS", qk, 2 + 2 + qk/64 + qk/2},
	I8:      {"I8", 1, 1},
	I16:     {"I16", 1, 2},
	I32:     {"I32", 1, 4},
	I64:     {"I64", 1, 8},
	F64:     {"F64", 1, 8},
	IQ1_M:   {"IQ1_M", qk, qk/8 + qk/16 + qk/32},
	BF16:    {"BF16", 1, 2},
	TQ1_0:   {"TQ1_0", qk, (qk-4*qk/64)/5 + qk/64 + 2},
	TQ2_0:   {"TQ2_0", qk, qk/4 + 2},
	MXFP4:   {"MXFP4", 32, 1 + 16}, // E8M0 exponent, 32 FP4 nibbles
}

// String returns the ggml name of t, such as "F32" or "Q4_0", or
// "GGMLType(n)" for a type this package does not know.
func (t GGMLType) String() string {
	if tr, ok := ggmlTypes[t]; ok {
		return tr.name
	}
	return fmt.Sprintf("GGMLType(%d)", uint32(t))
}

// Known reports whether t is a ggml type this package knows the layout of.
func (t GGMLType) Known() bool {
	_, ok := ggmlTypes[t]
	return ok
}

// BlockSize returns the number of elements in one block of t: 1 for plain
// types such as F32, 32 for Q4_0 and Q8_0, 256 for K-quants. It returns 0 for
// an unknown type.
func (t GGMLType) BlockSize() int { return ggmlTypes[t].blockSize }

// TypeSize returns the number of bytes in one block of t (4 for F32, 34 for
// Q8_0, 210 for Q6_K). It returns 0 for an unknown type.
func (t GGMLType) TypeSize() int { return ggmlTypes[t].typeSize }

// Quantized reports whether t stores elements in blocks of more than one.
func (t GGMLType) Quantized() bool { return t.BlockSize() > 1 }

// RowSize returns the number of bytes of a row of n elements of type t, and
// false when n is not a multiple of the block size or t is unknown.
func (t GGMLType) RowSize(n uint64) (uint64, bool) {
	bs := uint64(t.BlockSize())
	if bs == 0 || n%bs != 0 {
		return 0, false
	}
	return n / bs * uint64(t.TypeSize()), true
}

// GGMLTypes returns all known types in increasing numeric order.
func GGMLTypes() []GGMLType {
	ts := make([]GGMLType, 0, len(ggmlTypes))
	for t := range ggmlTypes {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	return ts
}

// ParseGGMLType returns the type named s, ignoring case ("q4_0", "F16").
// "fp32", "fp16" and "bf16" are accepted as aliases.
func ParseGGMLType(s string) (GGMLType, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	switch u {
	case "FP32":
		return F32, nil
	case "FP16":
		return F16, nil
	}
	for t, tr := range ggmlTypes {
		if tr.name == u {
			return t, nil
		}
	}
	names := make([]string, 0, len(ggmlTypes))
	for _, t := range GGMLTypes() {
		names = append(names, t.String())
	}
	return 0, fmt.Errorf("unknown ggml type %q (known: %s)", s, strings.Join(names, ", "))
}
