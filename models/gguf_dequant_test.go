package models

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
)

func TestFloat16RoundTrip(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := Float16ToFloat32(uint16(h))
		back := Float32ToFloat16(f)
		if math.IsNaN(float64(f)) {
			if back&0x7c00 != 0x7c00 || back&0x3ff == 0 {
				t.Errorf("NaN %#04x came back as %#04x", h, back)
			}
			continue
		}
		if back != uint16(h) {
			t.Errorf("%#04x -> %v -> %#04x", h, f, back)
		}
	}
}

func TestFloat16Values(t *testing.T) {
	tests := []struct {
		f float32
		h uint16
	}{
		{0, 0},
		{float32(math.Copysign(0, -1)), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{0.5, 0x3800},
		{65504, 0x7bff},                 // largest finite
		{65519, 0x7bff},                 // below the midpoint to Inf
		{65520, 0x7c00},                 // midpoint, ties to even: Inf
		{1e10, 0x7c00},                  // overflow
		{float32(math.Inf(-1)), 0xfc00}, // -Inf
		{6.103515625e-05, 0x0400},       // smallest normal
		{5.960464477539063e-08, 0x0001}, // smallest subnormal
		{2.9802322387695312e-08, 0},     // half of it: ties to even, 0
		{2.9802326e-08, 0x0001},         // just above half: rounds up
		{8.940696716308594e-08, 0x0002}, // 1.5 subnormal units: ties to even, 2
		{0.1, 0x2e66},                   // rounds down
		{1.0 / 3, 0x3555},               // rounds down
		{1 + 1.0/2048, 0x3c00},          // midpoint between 1 and next: ties to even
		{1 + 3.0/2048, 0x3c02},          // midpoint: ties to even, up
		{-1e-10, 0x8000},                // underflow keeps the sign
		{2049, 0x6800}, {2051, 0x6802},  // integers at spacing 2
	}
	for _, tt := range tests {
		if got := Float32ToFloat16(tt.f); got != tt.h {
			t.Errorf("Float32ToFloat16(%g) = %#04x, want %#04x", tt.f, got, tt.h)
		}
	}
	if h := Float32ToFloat16(float32(math.NaN())); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
		t.Errorf("NaN -> %#04x", h)
	}
}

// TestFloat16Nearest checks on random inputs that the conversion picks the
// nearest half (ties to even), against a search among neighbours in float64,
// which holds every float32 and half exactly.
func TestFloat16Nearest(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		// Exponents from deep subnormal to beyond the half range.
		x := float32(r.NormFloat64() * math.Exp2(float64(r.IntN(50)-30)))
		h := Float32ToFloat16(x)
		if math.IsInf(float64(Float16ToFloat32(h)), 0) {
			if math.Abs(float64(x)) < 65520 {
				t.Fatalf("%g -> Inf", x)
			}
			continue
		}
		d := math.Abs(float64(Float16ToFloat32(h)) - float64(x))
		for _, n := range []uint16{h - 1, h + 1} {
			if n&0x7c00 == 0x7c00 || (n^h)&0x8000 != 0 {
				continue
			}
			dn := math.Abs(float64(Float16ToFloat32(n)) - float64(x))
			if dn < d || (dn == d && h&1 == 1) {
				t.Fatalf("%g -> %#04x (%g), but %#04x (%g) is nearer or even", x, h, Float16ToFloat32(h), n, Float16ToFloat32(n))
			}
		}
	}
}

func TestDequantizeBlocks(t *testing.T) {
	le := binary.LittleEndian
	t.Run("Q8_0", func(t *testing.T) {
		blk := le.AppendUint16(nil, 0x3800) // d = 0.5
		for j := 0; j < 32; j++ {
			blk = append(blk, byte(int8(j*8-128)))
		}
		y := make([]float32, 32)
		if err := Dequantize(y, blk, Q8_0); err != nil {
			t.Fatal(err)
		}
		for j, v := range y {
			if want := float32(j*8-128) * 0.5; v != want {
				t.Errorf("y[%d] = %v, want %v", j, v, want)
			}
		}
	})
	t.Run("Q4_0", func(t *testing.T) {
		blk := le.AppendUint16(nil, 0x4000) // d = 2
		for j := 0; j < 16; j++ {
			blk = append(blk, byte(j|(15-j)<<4))
		}
		y := make([]float32, 32)
		if err := Dequantize(y, blk, Q4_0); err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 16; j++ {
			if y[j] != float32(j-8)*2 || y[j+16] != float32(7-j)*2 {
				t.Errorf("y[%d], y[%d] = %v, %v; want %v, %v", j, j+16, y[j], y[j+16], (j-8)*2, (7-j)*2)
			}
		}
	})
	t.Run("Q4_1", func(t *testing.T) {
		blk := le.AppendUint16(nil, 0x3c00) // d = 1
		blk = le.AppendUint16(blk, 0xc400)  // m = -4
		for j := 0; j < 16; j++ {
			blk = append(blk, byte(j|j<<4))
		}
		y := make([]float32, 32)
		if err := Dequantize(y, blk, Q4_1); err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 16; j++ {
			if y[j] != float32(j-4) || y[j+16] != float32(j-4) {
				t.Errorf("y[%d], y[%d] = %v, %v; want %v", j, j+16, y[j], y[j+16], j-4)
			}
		}
	})
	// Q5: the fifth bit of element j is bit j of qh.
	for _, typ := range []GGMLType{Q5_0, Q5_1} {
		t.Run(typ.String(), func(t *testing.T) {
			blk := le.AppendUint16(nil, 0x3c00) // d = 1
			off := -16
			if typ == Q5_1 {
				blk = le.AppendUint16(blk, 0x4000) // m = 2
				off = 2
			}
			qh := uint32(0xaaaa5555) // odd low elements, even high elements get bit 4
			blk = le.AppendUint32(blk, qh)
			for j := 0; j < 16; j++ {
				blk = append(blk, byte(j|(15-j)<<4))
			}
			y := make([]float32, 32)
			if err := Dequantize(y, blk, typ); err != nil {
				t.Fatal(err)
			}
			for j := 0; j < 32; j++ {
				q := j
				if j >= 16 {
					q = 15 - (j - 16)
				}
				q |= int(qh>>j&1) << 4
				if want := float32(q + off); y[j] != want {
					t.Errorf("y[%d] = %v, want %v", j, y[j], want)
				}
			}
		})
	}
	t.Run("BF16 and F32", func(t *testing.T) {
		y := make([]float32, 2)
		if err := Dequantize(y, []byte{0x80, 0x3f, 0x00, 0xc0}, BF16); err != nil || y[0] != 1 || y[1] != -2 {
			t.Errorf("BF16: %v, %v", y, err)
		}
		if err := Dequantize(y, le.AppendUint32(le.AppendUint32(nil, math.Float32bits(3.5)), math.Float32bits(-1)), F32); err != nil || y[0] != 3.5 || y[1] != -1 {
			t.Errorf("F32: %v, %v", y, err)
		}
	})
	if err := Dequantize(make([]float32, 256), make([]byte, IQ2_XXS.TypeSize()), IQ2_XXS); err == nil {
		t.Error("Dequantize(IQ2_XXS): no error")
	}
	defer func() {
		if recover() == nil {
			t.Error("Dequantize with a short source did not panic")
		}
	}()
	Dequantize(make([]float32, 32), make([]byte, 33), Q8_0)
}

// TestDequantizeSharedQ8 compares the Q8_0 and F16 files of TinyStories-656K,
// which hold the same weights: Q8_0 rounds each weight to a multiple of its
// block scale d, so the two differ by at most d/2, plus the F16 rounding of
// the reference (relative 2^-11) and of d itself (relative 2^-11 on values
// up to 127d).
func TestDequantizeSharedQ8(t *testing.T) {
	q8, err := Open(testmodels.Path(t, testmodels.TinyStories656KQ8))
	if err != nil {
		t.Fatal(err)
	}
	f16, err := Open(testmodels.Path(t, testmodels.TinyStories656KF16))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"token_embd.weight", "blk.1.ffn_down.weight", "blk.0.attn_k.weight"} {
		a, err := q8.ReadTensorFloat32(name)
		if err != nil {
			t.Fatal(err)
		}
		b, err := f16.ReadTensorFloat32(name)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := q8.ReadTensor(name)
		if err != nil {
			t.Fatal(err)
		}
		if len(a) != len(b) || len(a) == 0 {
			t.Fatalf("%s: %d and %d elements", name, len(a), len(b))
		}
		var maxAbs float64
		for i := range a {
			d := float64(Float16ToFloat32(binary.LittleEndian.Uint16(raw[i/32*34:])))
			tol := d/2 + math.Abs(float64(b[i]))*0x1p-11 + 127*d*0x1p-11
			if diff := math.Abs(float64(a[i]) - float64(b[i])); diff > tol {
				t.Fatalf("%s[%d]: Q8_0 %v, F16 %v, differ by %g > %g", name, i, a[i], b[i], diff, tol)
			}
			maxAbs = max(maxAbs, math.Abs(float64(b[i])))
		}
		if maxAbs == 0 {
			t.Errorf("%s is all zeros", name)
		}
	}
}
