package reference

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/lldiff/lldiff/models"
)

// This file decodes the GGUF tensor encodings the reference supports into
// float32. Each decoder is written from the block layouts in ggml's
// ggml-common.h (block_q4_0, block_q8_0) and the dequantize_row_* functions in
// ggml-quants.c; all values in a GGUF file are little-endian.

// encoding describes how one ggml type stores its elements: blocks of
// blockElems elements, each blockBytes long.
type encoding struct {
	name       string
	blockElems int
	blockBytes int
	// decode fills dst from src; len(dst) is a multiple of blockElems and
	// len(src) == len(dst)/blockElems*blockBytes.
	decode func(dst []float32, src []byte)
}

// encodings maps the ggml types the reference decodes to their decoders.
var encodings = map[models.GGMLType]encoding{
	models.F32:  {"F32", 1, 4, decodeF32},
	models.F16:  {"F16", 1, 2, decodeF16},
	models.Q4_0: {"Q4_0", 32, 2 + 16, decodeQ4_0},
	models.Q8_0: {"Q8_0", 32, 2 + 32, decodeQ8_0},
}

// supportedTypes lists the names of the types in encodings, for error messages.
func supportedTypes() string {
	var names []string
	for _, e := range encodings {
		names = append(names, e.name)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// dequantize decodes n elements of ggml type typ from raw.
func dequantize(typ models.GGMLType, raw []byte, n int) ([]float32, error) {
	enc, ok := encodings[typ]
	if !ok && models.CanDequantize(typ) {
		// K-quants, IQ4, BF16, Q4_1, Q5_0/1: models.Dequantize, which
		// llamacpp's tests prove bit-exact with ggml's own decoders.
		enc = encoding{typ.String(), typ.BlockSize(), typ.TypeSize(), func(dst []float32, src []byte) {
			if err := models.Dequantize(dst, src, typ); err != nil {
				panic(err) // sizes were checked below
			}
		}}
		ok = true
	}
	if !ok {
		return nil, fmt.Errorf("type %s is not supported by the reference; it supports %s and the types of models.Dequantize", typ, supportedTypes())
	}
	if n%enc.blockElems != 0 {
		return nil, fmt.Errorf("%d elements of %s: not a whole number of %d-element blocks", n, enc.name, enc.blockElems)
	}
	if want := n / enc.blockElems * enc.blockBytes; len(raw) != want {
		return nil, fmt.Errorf("%d elements of %s take %d bytes, got %d", n, enc.name, want, len(raw))
	}
	out := make([]float32, n)
	enc.decode(out, raw)
	return out, nil
}

// decodeF32: 4 bytes per element, IEEE 754 binary32.
func decodeF32(dst []float32, src []byte) {
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}

// decodeF16: 2 bytes per element, IEEE 754 binary16.
func decodeF16(dst []float32, src []byte) {
	for i := range dst {
		dst[i] = halfToFloat(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

// halfToFloat converts an IEEE 754 binary16 value (1 sign bit, 5 exponent bits
// with bias 15, 10 mantissa bits) to float32. Every half value is exactly
// representable as a float32, so the conversion is exact.
func halfToFloat(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch exp {
	case 0: // zero or subnormal: mant * 2^-24
		v := float32(mant) * (1.0 / (1 << 24))
		return math.Float32frombits(math.Float32bits(v) | sign)
	case 0x1f: // infinity (mant == 0) or NaN, keeping the payload
		return math.Float32frombits(sign | 0xff<<23 | mant<<13)
	default: // normal: rebias the exponent from 15 to 127, widen the mantissa
		return math.Float32frombits(sign | (exp-15+127)<<23 | mant<<13)
	}
}

// decodeQ8_0: blocks of 32 elements, 34 bytes each (block_q8_0):
//
//	d  float16   scale
//	qs [32]int8  quants
//
// element j of the block is d * qs[j].
func decodeQ8_0(dst []float32, src []byte) {
	for b := 0; b < len(dst)/32; b++ {
		blk := src[34*b : 34*(b+1)]
		d := halfToFloat(binary.LittleEndian.Uint16(blk))
		for j := 0; j < 32; j++ {
			dst[32*b+j] = float32(int8(blk[2+j])) * d
		}
	}
}

// decodeQ4_0: blocks of 32 elements, 18 bytes each (block_q4_0):
//
//	d  float16   scale
//	qs [16]byte  two 4-bit quants per byte
//
// For j < 16, element j is d * (low nibble of qs[j] - 8) and element j+16 is
// d * (high nibble of qs[j] - 8): the first half of the block sits in the low
// nibbles, the second half in the high nibbles (not interleaved).
func decodeQ4_0(dst []float32, src []byte) {
	for b := 0; b < len(dst)/32; b++ {
		blk := src[18*b : 18*(b+1)]
		d := halfToFloat(binary.LittleEndian.Uint16(blk))
		for j := 0; j < 16; j++ {
			q := blk[2+j]
			dst[32*b+j] = float32(int(q&0x0f)-8) * d
			dst[32*b+j+16] = float32(int(q>>4)-8) * d
		}
	}
}
