package reference

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/models"
)

func TestHalfToFloatKnownValues(t *testing.T) {
	tests := []struct {
		name string
		bits uint16
		want float32
	}{
		{"one", 0x3c00, 1},
		{"minus two", 0xc000, -2},
		{"one third", 0x3555, 0.333251953125}, // 1365/4096
		{"largest normal", 0x7bff, 65504},
		{"smallest normal", 0x0400, 1.0 / 16384},         // 2^-14
		{"smallest subnormal", 0x0001, 1.0 / (1 << 24)},  // 2^-24
		{"negative subnormal", 0x8001, -1.0 / (1 << 24)}, // -2^-24
		{"largest subnormal", 0x03ff, 1023.0 / (1 << 24)},
		{"zero", 0x0000, 0},
		{"plus infinity", 0x7c00, float32(math.Inf(1))},
		{"minus infinity", 0xfc00, float32(math.Inf(-1))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Exact comparison: every half is exactly representable in float32.
			if got := halfToFloat(tt.bits); got != tt.want {
				t.Errorf("halfToFloat(%#04x) = %g, want %g", tt.bits, got, tt.want)
			}
		})
	}
	if got := halfToFloat(0x8000); got != 0 || !math.Signbit(float64(got)) {
		t.Errorf("halfToFloat(0x8000) = %g, want -0", got)
	}
	if got := halfToFloat(0x7e00); !math.IsNaN(float64(got)) {
		t.Errorf("halfToFloat(0x7e00) = %g, want NaN", got)
	}
}

// TestHalfToFloatAllValues checks every one of the 65536 half values against
// the textbook formula, computed in float64 with math.Ldexp: a different
// route from the bit manipulation in halfToFloat.
func TestHalfToFloatAllValues(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		sign := 1.0
		if h&0x8000 != 0 {
			sign = -1
		}
		exp := int(h>>10) & 0x1f
		mant := float64(h & 0x3ff)
		var want float64
		switch {
		case exp == 0:
			want = sign * math.Ldexp(mant, -24)
		case exp == 31 && mant == 0:
			want = math.Inf(int(sign))
		case exp == 31:
			want = math.NaN()
		default:
			want = sign * math.Ldexp(1+mant/1024, exp-15)
		}
		got := float64(halfToFloat(h))
		if math.IsNaN(want) {
			if !math.IsNaN(got) {
				t.Fatalf("halfToFloat(%#04x) = %g, want NaN", h, got)
			}
			continue
		}
		if got != want || math.Signbit(got) != math.Signbit(want) {
			t.Fatalf("halfToFloat(%#04x) = %g, want %g", h, got, want)
		}
	}
}

func TestDequantizeF32AndF16(t *testing.T) {
	f32 := make([]byte, 8)
	binary.LittleEndian.PutUint32(f32, math.Float32bits(1.5))
	binary.LittleEndian.PutUint32(f32[4:], math.Float32bits(-3.25))
	got, err := dequantize(models.F32, f32, 2)
	if err != nil {
		t.Fatal(err)
	}
	assertExact(t, "F32", got, []float32{1.5, -3.25})

	f16 := []byte{0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00} // 1, -2, 2^-24
	got, err = dequantize(models.F16, f16, 3)
	if err != nil {
		t.Fatal(err)
	}
	assertExact(t, "F16", got, []float32{1, -2, 1.0 / (1 << 24)})
}

func TestDequantizeQ8_0(t *testing.T) {
	// Two blocks. Block 0: d = 0.5 (half 0x3800), qs[j] = j - 16, except the
	// extremes -128 and 127 at positions 0 and 31. Block 1: d = -2 (0xc000),
	// qs[j] = 1.
	raw := make([]byte, 2*34)
	raw[0], raw[1] = 0x00, 0x38
	want := make([]float32, 64)
	for j := 0; j < 32; j++ {
		q := int8(j - 16)
		switch j {
		case 0:
			q = -128
		case 31:
			q = 127
		}
		raw[2+j] = byte(q)
		want[j] = 0.5 * float32(q)
	}
	raw[34], raw[35] = 0x00, 0xc0
	for j := 0; j < 32; j++ {
		raw[36+j] = 1
		want[32+j] = -2
	}
	got, err := dequantize(models.Q8_0, raw, 64)
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != -64 || got[31] != 63.5 || got[16] != 0 {
		t.Errorf("Q8_0 block 0: got[0]=%g got[16]=%g got[31]=%g, want -64, 0, 63.5", got[0], got[16], got[31])
	}
	assertExact(t, "Q8_0", got, want)
}

func TestDequantizeQ4_0(t *testing.T) {
	// d = 2 (half 0x4000). Byte j holds low nibble j and high nibble 15-j, so
	// element j = (j-8)*2 and element j+16 = (15-j-8)*2 = (7-j)*2.
	raw := make([]byte, 18)
	raw[0], raw[1] = 0x00, 0x40
	for j := 0; j < 16; j++ {
		raw[2+j] = byte(15-j)<<4 | byte(j)
	}
	want := []float32{
		-16, -14, -12, -10, -8, -6, -4, -2, 0, 2, 4, 6, 8, 10, 12, 14, // low nibbles 0..15
		14, 12, 10, 8, 6, 4, 2, 0, -2, -4, -6, -8, -10, -12, -14, -16, // high nibbles 15..0
	}
	got, err := dequantize(models.Q4_0, raw, 32)
	if err != nil {
		t.Fatal(err)
	}
	assertExact(t, "Q4_0", got, want)
}

func TestDequantizeErrors(t *testing.T) {
	tests := []struct {
		name    string
		typ     models.GGMLType
		raw     []byte
		n       int
		wantErr []string
	}{
		{"unsupported type", models.IQ2_XXS, make([]byte, 66), 256, []string{"IQ2_XXS", "not supported", "F16, F32, Q4_0, Q8_0"}},
		{"K-quant short data", models.Q4_K, make([]byte, 143), 256, []string{"take 144 bytes, got 143"}},
		{"partial block", models.Q8_0, make([]byte, 34), 31, []string{"31 elements", "32-element blocks"}},
		{"short data", models.Q4_0, make([]byte, 17), 32, []string{"take 18 bytes, got 17"}},
		{"long data", models.F32, make([]byte, 12), 2, []string{"take 8 bytes, got 12"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dequantize(tt.typ, tt.raw, tt.n)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func assertExact(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		// Decoding is exact: d*q of a half scale and a small integer is
		// representable in float32, so no tolerance.
		if got[i] != want[i] {
			t.Errorf("%s[%d] = %g, want %g", what, i, got[i], want[i])
		}
	}
}
