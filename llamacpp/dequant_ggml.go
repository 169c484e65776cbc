package llamacpp

/*
#include <stdint.h>
#include "ggml.h"

// ggml's reference Q8_K routines (ggml-quants.h, a header internal to ggml):
// Q8_K has no to_float in ggml's type traits and ggml_quantize_chunk does
// not take it.
void quantize_row_q8_K_ref(const float *x, void *y, int64_t k);
void dequantize_row_q8_K(const void *x, float *y, int64_t k);

static int lldiff_to_float(int t, const void *x, float *y, int64_t n) { ggml_to_float_t f = ggml_get_type_traits((enum ggml_type) t)->to_float; if (f == NULL) return -1; f(x, y, n); return 0; }
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/lldiff/lldiff/models"
)

// ggmlRowSize returns the bytes ggml says n elements of type t take, and an
// error for a type ggml does not have (a removed or unknown one) or an n
// that is not a whole number of its blocks. Checking here keeps ggml's
// asserts, which abort the process, out of reach.
func ggmlRowSize(t models.GGMLType, n int) (int, error) {
	if uint32(t) >= uint32(C.GGML_TYPE_COUNT) || C.ggml_blck_size(C.enum_ggml_type(t)) == 0 {
		return 0, fmt.Errorf("ggml has no type %s", t)
	}
	bs := int(C.ggml_blck_size(C.enum_ggml_type(t)))
	if n <= 0 || n%bs != 0 {
		return 0, fmt.Errorf("%d elements of %s: not a whole number of %d-element blocks", n, t, bs)
	}
	return int(C.ggml_row_size(C.enum_ggml_type(t), C.int64_t(n))), nil
}

// QuantizeWithGGML encodes src, rows of nPerRow values, as type t with
// ggml's own quantizer (ggml_quantize_chunk, without an importance matrix;
// Q8_K with ggml's reference quantize_row_q8_K_ref). It is for checking
// lldiff's pure-Go decoder, models.Dequantize, against ggml, and returns an
// error for types that need an importance matrix (IQ2_XXS, IQ2_XS and
// IQ1_S), types ggml cannot quantize, and shapes that are not whole blocks.
func QuantizeWithGGML(t models.GGMLType, src []float32, nPerRow int) ([]byte, error) {
	if nPerRow <= 0 || len(src) == 0 || len(src)%nPerRow != 0 {
		return nil, fmt.Errorf("quantize: %d values are not whole rows of %d", len(src), nPerRow)
	}
	rowBytes, err := ggmlRowSize(t, nPerRow)
	if err != nil {
		return nil, fmt.Errorf("quantize: %w", err)
	}
	nRows := len(src) / nPerRow
	dst := make([]byte, rowBytes*nRows)
	x, y := (*C.float)(unsafe.Pointer(&src[0])), unsafe.Pointer(&dst[0])
	if t == models.Q8_K {
		C.quantize_row_q8_K_ref(x, y, C.int64_t(len(src)))
		return dst, nil
	}
	ct := C.enum_ggml_type(t)
	if C.ggml_quantize_requires_imatrix(ct) {
		return nil, fmt.Errorf("quantize: ggml needs an importance matrix to quantize %s", t)
	}
	switch t {
	case models.F32, models.F16, models.BF16:
	default:
		if !bool(C.ggml_is_quantized(ct)) {
			return nil, fmt.Errorf("quantize: ggml cannot quantize to %s", t)
		}
	}
	// ggml_quantize_chunk aborts on a type it has no quantizer for (Q8_1);
	// the types lldiff decodes all have one.
	if t == models.Q8_1 {
		return nil, fmt.Errorf("quantize: ggml cannot quantize to %s", t)
	}
	n := C.ggml_quantize_chunk(ct, x, y, 0, C.int64_t(nRows), C.int64_t(nPerRow), nil)
	if int(n) != len(dst) {
		return nil, fmt.Errorf("quantize: ggml wrote %d bytes of %s, want %d", int(n), t, len(dst))
	}
	return dst, nil
}

// DequantizeWithGGML decodes n elements of type t from raw with ggml's own
// decoder: the to_float of ggml_get_type_traits; for Q8_K, which has none
// there, ggml's dequantize_row_q8_K; F32 is copied as ggml reads it, in
// host byte order. It is for checking models.Dequantize
// against ggml, and returns an error when raw is not the size of n
// elements or ggml has no decoder for t.
func DequantizeWithGGML(t models.GGMLType, raw []byte, n int) ([]float32, error) {
	size, err := ggmlRowSize(t, n)
	if err != nil {
		return nil, fmt.Errorf("dequantize: %w", err)
	}
	if len(raw) != size {
		return nil, fmt.Errorf("dequantize: %d elements of %s take %d bytes, got %d", n, t, size, len(raw))
	}
	dst := make([]float32, n)
	x, y := unsafe.Pointer(&raw[0]), (*C.float)(unsafe.Pointer(&dst[0]))
	switch t {
	case models.F32: // ggml's F32 is the raw bits; it has no to_float
		copy(dst, unsafe.Slice((*float32)(x), n))
		return dst, nil
	case models.Q8_K:
		C.dequantize_row_q8_K(x, y, C.int64_t(n))
		return dst, nil
	}
	if C.lldiff_to_float(C.int(t), x, y, C.int64_t(n)) != 0 {
		return nil, fmt.Errorf("dequantize: ggml has no decoder for %s", t)
	}
	return dst, nil
}
