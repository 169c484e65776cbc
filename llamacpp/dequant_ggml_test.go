package llamacpp

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/lldiff/lldiff/models"
)

// The tests in this file check lldiff's pure-Go decoder, models.Dequantize,
// against ggml's own, for every type models.Dequantize supports: on data
// ggml quantized itself and on random bytes (scale and quant bit patterns
// ggml's quantizer never writes). Decoding is a short fixed sequence of
// float32 operations per element, the same on both sides, so the two must
// agree to the bit (NaN, from random float16 scales, only has to be NaN
// on both sides: its payload is not part of the format).

// dequantRowLen is the row length of the test data: two 256-element
// super-blocks, sixteen 32-element blocks.
const dequantRowLen = 512

// dequantRows returns rows of dequantRowLen values that exercise the
// quantizers: weight-like and unit normal values, float16-subnormal block
// scales (σ 1e-5), large values, outliers, one-signed rows, a constant row
// and a zero row.
func dequantRows(r *rand.Rand) []float32 {
	var out []float32
	row := func(f func(i int) float64) {
		for i := range dequantRowLen {
			out = append(out, float32(f(i)))
		}
	}
	for _, sigma := range []float64{1, 0.02, 1e-5, 300} {
		row(func(int) float64 { return sigma * r.NormFloat64() })
	}
	row(func(int) float64 { // outliers: one value in 40 is 50 times larger
		if r.IntN(40) == 0 {
			return 50 * r.NormFloat64()
		}
		return r.NormFloat64()
	})
	row(func(int) float64 { return r.Float64() })
	row(func(int) float64 { return -r.Float64() - 0.5 })
	row(func(int) float64 { return 0.7 })
	row(func(int) float64 { return 0 })
	row(func(i int) float64 { return float64(i%17 - 8) })
	return out
}

// sameDecoding compares two decodings element by element and reports up to
// five differences; the element index also gives the block.
func sameDecoding(t *testing.T, typ models.GGMLType, got, want []float32) {
	t.Helper()
	bad := 0
	for i := range want {
		g, w := got[i], want[i]
		if math.Float32bits(g) == math.Float32bits(w) || (g != g && w != w) {
			continue
		}
		if bad++; bad <= 5 {
			t.Errorf("element %d (block %d of %s): models.Dequantize %v (%#08x), ggml %v (%#08x)",
				i, i/typ.BlockSize(), typ, g, math.Float32bits(g), w, math.Float32bits(w))
		}
	}
	if bad > 5 {
		t.Errorf("%d of %d elements differ", bad, len(want))
	}
}

// checkRoundTrip checks that ggml's decoding of its own encoding is near
// the source, so that the bit comparison does not pass on a vacuous
// encoding: a relative L2 error per row below 0.5 (the coarsest type, Q2_K,
// measures 0.318 on these rows) and zeros for the zero row. Row 2
// (σ 1e-5) is left out: it is below what the float16 super-block scales of
// Q5_K, Q6_K and IQ4_XS can hold, and ggml's quantizer gives it errors of
// 1 and more; it is there to put float16 subnormal scales in the bit
// comparison.
func checkRoundTrip(t *testing.T, typ models.GGMLType, dec, src []float32) {
	t.Helper()
	worst := 0.0
	for r := 0; r < len(src)/dequantRowLen; r++ {
		a, b := dec[r*dequantRowLen:(r+1)*dequantRowLen], src[r*dequantRowLen:(r+1)*dequantRowLen]
		var d, n float64
		for i := range a {
			d += (float64(a[i]) - float64(b[i])) * (float64(a[i]) - float64(b[i]))
			n += float64(b[i]) * float64(b[i])
		}
		switch {
		case r == 2:
		case n == 0 && d != 0:
			t.Errorf("row %d: ggml decodes %s of zeros to non-zeros", r, typ)
		case n > 0:
			worst = max(worst, math.Sqrt(d/n))
		}
	}
	t.Logf("ggml's own round trip through %s: worst relative L2 error per row %.3g", typ, worst)
	if worst > 0.5 {
		t.Errorf("ggml's own round trip through %s has relative L2 error %.3g", typ, worst)
	}
}

// dequantTypes are the types models.Dequantize supports.
func dequantTypes(t *testing.T) []models.GGMLType {
	var ts []models.GGMLType
	for _, typ := range models.GGMLTypes() {
		if models.CanDequantize(typ) {
			ts = append(ts, typ)
		}
	}
	// The types of today's Q4_K_M and BF16 files, and the rest of the
	// issue's list, must be among them.
	for _, typ := range []models.GGMLType{models.BF16, models.Q4_1, models.Q5_0, models.Q5_1, models.Q2_K, models.Q3_K,
		models.Q4_K, models.Q5_K, models.Q6_K, models.Q8_K, models.IQ4_NL, models.IQ4_XS} {
		if !slices.Contains(ts, typ) {
			t.Errorf("models.Dequantize does not support %s", typ)
		}
	}
	return ts
}

func TestDequantizeMatchesGGML(t *testing.T) {
	src := dequantRows(rand.New(rand.NewPCG(16, 1)))
	for _, typ := range dequantTypes(t) {
		t.Run(typ.String(), func(t *testing.T) {
			raw, err := QuantizeWithGGML(typ, src, dequantRowLen)
			if err != nil {
				t.Fatal(err)
			}
			want, err := DequantizeWithGGML(typ, raw, len(src))
			if err != nil {
				t.Fatal(err)
			}
			checkRoundTrip(t, typ, want, src)
			got := make([]float32, len(src))
			if err := models.Dequantize(got, raw, typ); err != nil {
				t.Fatal(err)
			}
			sameDecoding(t, typ, got, want)
		})
	}
}

// TestDequantizeRandomBytesMatchesGGML decodes random bytes: every scale,
// min and quant bit pattern, including scales ggml's quantizer does not
// write (Q3_K's -32, Q6_K's -128, IQ4_XS's -32), float16 subnormals, Inf
// and NaN.
func TestDequantizeRandomBytesMatchesGGML(t *testing.T) {
	r := rand.New(rand.NewPCG(16, 2))
	for _, typ := range dequantTypes(t) {
		t.Run(typ.String(), func(t *testing.T) {
			n := 256 * max(typ.BlockSize(), 32) // 256 blocks, 8192 plain values
			size, ok := typ.RowSize(uint64(n))
			if !ok {
				t.Fatalf("%d elements of %s are not whole blocks", n, typ)
			}
			raw := make([]byte, size)
			for i := range raw {
				raw[i] = byte(r.Uint32())
			}
			want, err := DequantizeWithGGML(typ, raw, n)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]float32, n)
			if err := models.Dequantize(got, raw, typ); err != nil {
				t.Fatal(err)
			}
			sameDecoding(t, typ, got, want)
		})
	}
}

// TestGGMLHelpersReject checks the errors that keep ggml's asserts, which
// abort the process, out of reach.
func TestGGMLHelpersReject(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  func() error
	}{
		{"partial block", func() error { _, err := QuantizeWithGGML(models.Q4_K, make([]float32, 128), 128); return err }},
		{"partial row", func() error { _, err := QuantizeWithGGML(models.Q8_0, make([]float32, 96), 64); return err }},
		{"needs an importance matrix", func() error { _, err := QuantizeWithGGML(models.IQ2_XXS, make([]float32, 256), 256); return err }},
		{"no quantizer", func() error { _, err := QuantizeWithGGML(models.Q8_1, make([]float32, 32), 32); return err }},
		{"removed type", func() error { _, err := DequantizeWithGGML(models.GGMLType(4), make([]byte, 20), 32); return err }},
		{"short data", func() error { _, err := DequantizeWithGGML(models.Q6_K, make([]byte, 209), 256); return err }},
	} {
		if tc.err() == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}
