package models

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"
)

// kquantCase is one hand-built block: every element of sub-block i (of
// width sub) is perSub[i], except the elements listed in except. The
// expected values were worked out by hand from the block layouts in
// ggml-common.h; they are all exact in float32, so the comparison is exact.
type kquantCase struct {
	name   string
	typ    GGMLType
	block  []byte
	sub    int
	perSub []float32
	except map[int]float32
}

// fill returns n copies of b.
func fill(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }

// cat concatenates byte slices.
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// u16 returns v little-endian.
func u16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }

// The float16 constants used below.
const (
	h025 = 0x3400 // 0.25
	h05  = 0x3800 // 0.5
	h1   = 0x3c00 // 1
	h2   = 0x4000 // 2
)

// kScales12 are the 12 scale bytes of the Q4_K and Q5_K blocks below: six-bit
// scales {1, 2, 3, 63, 17, 34, 51, 63} and mins {0, 5, 10, 32, 48, 1, 16, 63}.
// Bytes 0-3 hold scales 0-3 and, in bits 6-7, the high two bits of scales
// 4-7 (1, 2, 3, 3); bytes 4-7 the same for the mins (high bits 3, 0, 1, 3);
// bytes 8-11 the low four bits of scale j+4 (low nibble) and min j+4 (high
// nibble).
var kScales12 = []byte{
	1 | 1<<6, 2 | 2<<6, 3 | 3<<6, 63 | 3<<6, // 0x41 0x82 0xc3 0xff
	0 | 3<<6, 5 | 0<<6, 10 | 1<<6, 32 | 3<<6, // 0xc0 0x05 0x4a 0xe0
	1 | 0<<4, 2 | 1<<4, 3 | 0<<4, 15 | 15<<4, // 0x01 0x12 0x03 0xff
}

func kquantCases() []kquantCase {
	// Q4_K: d 1, dmin 0.5; every quant byte 0xf3 puts 3 in the even
	// sub-blocks (low nibbles) and 15 in the odd ones (high nibbles);
	// y = scale*q - 0.5*min. qs[5] = 0x7a gives element 5 (sub-block 0) 10
	// and element 37 (sub-block 1) 7.
	q4qs := fill(128, 0xf3)
	q4qs[5] = 0x7a
	q4 := kquantCase{
		name:  "Q4_K",
		typ:   Q4_K,
		block: cat(u16(h1), u16(h05), kScales12, q4qs),
		sub:   32,
		perSub: []float32{
			1*3 - 0, 2*15 - 2.5, 3*3 - 5, 63*15 - 16, // 3, 27.5, 4, 929
			17*3 - 24, 34*15 - 0.5, 51*3 - 8, 63*15 - 31.5, // 27, 509.5, 145, 913.5
		},
		except: map[int]float32{5: 1 * 10, 37: 2*7 - 2.5},
	}

	// Q5_K: Q4_K's block with qh = 0xa5 (bits 0, 2, 5, 7) adding 16 to the
	// quants of sub-blocks 0, 2, 5 and 7, except qh[7] = 0, which holds the
	// high bit of element 7 of every sub-block: elements 7 and 71
	// (sub-blocks 0 and 2) keep 3, elements 167 and 231 (5 and 7) keep 15.
	qh := fill(32, 0xa5)
	qh[7] = 0
	q5 := kquantCase{
		name:  "Q5_K",
		typ:   Q5_K,
		block: cat(u16(h1), u16(h05), kScales12, qh, fill(128, 0xf3)),
		sub:   32,
		perSub: []float32{
			1 * 19, 2*15 - 2.5, 3*19 - 5, 63*15 - 16, // 19, 27.5, 52, 929
			17*3 - 24, 34*31 - 0.5, 51*3 - 8, 63*31 - 31.5, // 27, 1053.5, 145, 1921.5
		},
		except: map[int]float32{7: 1 * 3, 71: 3*3 - 5, 167: 34*15 - 0.5, 231: 63*15 - 31.5},
	}

	// Q6_K: d 0.25, scales 1, -1, 2, -2, ..., 7, -7, 127, -128. ql = 0x21
	// (low nibble 1, high 2) and qh = 0xe4 (bit pairs 0, 1, 2, 3) give the
	// four quarters of each half the quants 1, 1+16, 2+32, 2+48, that is
	// -31, -15, 2, 18 after the offset of 32.
	ql, qh6 := fill(128, 0x21), fill(64, 0xe4)
	// ql[0] = qh[0] = 0xff: elements 0 and 64 are 63 (31), element 32 is
	// 1|3<<4 = 49 (17); element 96 stays 2|3<<4 = 50.
	ql[0], qh6[0] = 0xff, 0xff
	// ql[64+1+32] = qh[32+1] = 0: in the second half, elements 161 and 225
	// are 0 (-32); element 193 is 2 (-30); element 129 stays 1.
	ql[97], qh6[33] = 0, 0
	sc6 := []byte{1, 0xff, 2, 0xfe, 3, 0xfd, 4, 0xfc, 5, 0xfb, 6, 0xfa, 7, 0xf9, 127, 0x80}
	q6 := kquantCase{
		name:  "Q6_K",
		typ:   Q6_K,
		block: cat(ql, qh6, sc6, u16(h025)),
		sub:   16,
		perSub: []float32{
			-7.75, 7.75, -7.5, 7.5, 1.5, -1.5, 18, -18, // 0.25*(±1*-31, ±2*-15, ±3*2, ±4*18)
			-38.75, 38.75, -22.5, 22.5, 3.5, -3.5, 571.5, -576, // 0.25*(±5*-31, ±6*-15, ±7*2, 127*18, -128*18)
		},
		except: map[int]float32{
			0: 0.25 * 1 * 31, 64: 0.25 * 3 * 31, 32: 0.25 * 2 * 17,
			161: 0.25 * 6 * -32, 225: 0.25 * 127 * -32, 193: 0.25 * 7 * -30,
		},
	}

	// Q3_K: d 0.5, signed scales {-32, -1, 0, 1, 31, 5, -5, 10, -10, 20,
	// -20, 7, -7, 3, -3, 15}, stored plus 32 as {0, 31, 32, 33, 63, 37, 27,
	// 42, 22, 52, 12, 39, 25, 35, 29, 47}: low nibbles in bytes 0-7
	// (sub-block i, then i+8 in the high nibble), the high two bits of
	// sub-block i in byte 8+i%4 at bit pair i/4.
	sc3 := []byte{
		0 | 6<<4, 15 | 4<<4, 0 | 12<<4, 1 | 7<<4, 15 | 9<<4, 5 | 3<<4, 11 | 13<<4, 10 | 15<<4,
		0 | 3<<2 | 1<<4 | 1<<6, // high bits of 0, 4, 8, 12: 0, 3, 1, 1
		1 | 2<<2 | 3<<4 | 2<<6, // of 1, 5, 9, 13: 1, 2, 3, 2
		2 | 1<<2 | 0<<4 | 1<<6, // of 2, 6, 10, 14: 2, 1, 0, 1
		2 | 2<<2 | 2<<4 | 2<<6, // of 3, 7, 11, 15: 2, 2, 2, 2
	}
	// qs = 0xe4: bit pair j gives the low bits j. hmask = 0x0f sets the high
	// bit of the first 128 elements (bits 0-3: e/32 < 4) and clears it for
	// the rest, which lose 4. hmask[0] = 0x0e clears it for element 0 (-4
	// with scale -32); hmask[20] = 0x1f sets it for element 148 (sub-block
	// 9, low bits 0).
	hm := fill(32, 0x0f)
	hm[0], hm[20] = 0x0e, 0x1f
	q3 := kquantCase{
		name:  "Q3_K",
		typ:   Q3_K,
		block: cat(hm, fill(64, 0xe4), sc3, u16(h05)),
		sub:   16,
		perSub: []float32{
			0, 0, 0, 0.5, 31, 5, -7.5, 15, // 0.5*scale*{0, 0, 1, 1, 2, 2, 3, 3}
			20, -40, 30, -10.5, 7, -3, 1.5, -7.5, // 0.5*scale*{-4, -4, -3, -3, -2, -2, -1, -1}
		},
		except: map[int]float32{0: 0.5 * -32 * -4, 148: 0},
	}

	// Q2_K: d 0.5, dmin 0.25, scale i and min 15-i in sub-block i; qs =
	// 0xe4 gives quant j at bit pair j, so sub-block i has quant (i%8)/2;
	// y = 0.5*i*q - 0.25*(15-i). qs[0] = 0x1b (pairs 3, 2, 1, 0) changes
	// elements 0, 32, 64 and 96.
	sc2 := make([]byte, 16)
	for i := range sc2 {
		sc2[i] = byte(i | (15-i)<<4)
	}
	qs2 := fill(64, 0xe4)
	qs2[0] = 0x1b
	q2 := kquantCase{
		name:  "Q2_K",
		typ:   Q2_K,
		block: cat(sc2, qs2, u16(h05), u16(h025)),
		sub:   16,
		perSub: []float32{
			-3.75, -3.5, -2.25, -1.5, 1.25, 2.5, 6.75, 8.5,
			-1.75, -1.5, 3.75, 4.5, 11.25, 12.5, 20.75, 22.5,
		},
		except: map[int]float32{0: -3.75, 32: 0.5*2*2 - 3.25, 64: 0.5*4*1 - 2.75, 96: 0.5*6*0 - 2.25},
	}

	// IQ4_XS: d 0.5, six-bit scales {0, 63, 32, 33, 16, 48, 31, 1}, signed
	// {-32, 31, 0, 1, -16, 16, -1, -31}: low nibbles two per byte (even
	// sub-block low), high bits {0, 3, 2, 2, 1, 3, 1, 0} at bit pair i of
	// scales_h = 0x1dac. Quant bytes 0x8f: levels kvalues[15] = 113 for the
	// first 16 elements of each sub-block, kvalues[8] = 1 for the last 16.
	xsScales := []float32{-32, 31, 0, 1, -16, 16, -1, -31}
	xs := kquantCase{
		name:  "IQ4_XS",
		typ:   IQ4_XS,
		block: cat(u16(h05), u16(0x1dac), []byte{0xf0, 0x10, 0x00, 0x1f}, fill(128, 0x8f)),
		sub:   16,
	}
	for _, s := range xsScales {
		xs.perSub = append(xs.perSub, 0.5*s*113, 0.5*s*1)
	}

	// IQ4_NL: d 2, byte j holds j (element j) and 15-j (element j+16).
	nlqs := make([]byte, 16)
	for j := range nlqs {
		nlqs[j] = byte(j | (15-j)<<4)
	}
	nl := kquantCase{
		name:   "IQ4_NL",
		typ:    IQ4_NL,
		block:  cat(u16(h2), nlqs),
		sub:    1,
		perSub: []float32{-254, -208, -166, -130, -98, -70, -44, -20, 2, 26, 50, 76, 106, 138, 178, 226},
	}
	for j := 15; j >= 0; j-- {
		nl.perSub = append(nl.perSub, nl.perSub[j])
	}

	// Q8_K: float32 d 0.375, quants -128..127; the bsums are not read.
	q8qs := make([]byte, 256)
	for e := range q8qs {
		q8qs[e] = byte(int8(e - 128))
	}
	q8 := kquantCase{
		name:  "Q8_K",
		typ:   Q8_K,
		block: cat(binary.LittleEndian.AppendUint32(nil, math.Float32bits(0.375)), q8qs, fill(32, 0x5a)),
		sub:   1,
	}
	for e := range 256 {
		q8.perSub = append(q8.perSub, 0.375*float32(e-128))
	}
	return []kquantCase{q2, q3, q4, q5, q6, q8, nl, xs}
}

func TestDequantizeKQuantBlocks(t *testing.T) {
	for _, tc := range kquantCases() {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.block) != tc.typ.TypeSize() {
				t.Fatalf("hand-built block is %d bytes, %s blocks are %d", len(tc.block), tc.typ, tc.typ.TypeSize())
			}
			n := tc.typ.BlockSize()
			if len(tc.perSub)*tc.sub != n {
				t.Fatalf("%d sub-blocks of %d expected values for a block of %d", len(tc.perSub), tc.sub, n)
			}
			if !CanDequantize(tc.typ) {
				t.Fatalf("CanDequantize(%s) = false", tc.typ)
			}
			// Two copies of the block: the second checks the stride
			// between blocks.
			src := cat(tc.block, tc.block)
			y := make([]float32, 2*n)
			if err := Dequantize(y, src, tc.typ); err != nil {
				t.Fatal(err)
			}
			bad := 0
			for e, got := range y {
				want := tc.perSub[(e%n)/tc.sub]
				if v, ok := tc.except[e%n]; ok {
					want = v
				}
				if got != want {
					if bad++; bad <= 10 {
						t.Errorf("element %d (block %d, sub-block %d) = %v, want %v", e, e/n, (e%n)/tc.sub, got, want)
					}
				}
			}
			if bad > 10 {
				t.Errorf("%d elements wrong in all", bad)
			}
		})
	}
}

// TestKScaleMin checks the 6-bit scale packing of Q4_K and Q5_K on the
// bytes of kScales12, and on every value of every position: scale and min
// j of 0-63 packed as ggml-common.h describes must come back.
func TestKScaleMin(t *testing.T) {
	wantSc := []byte{1, 2, 3, 63, 17, 34, 51, 63}
	wantM := []byte{0, 5, 10, 32, 48, 1, 16, 63}
	for j := range 8 {
		if sc, m := kScaleMin(kScales12, j); sc != wantSc[j] || m != wantM[j] {
			t.Errorf("kScaleMin(kScales12, %d) = %d, %d; want %d, %d", j, sc, m, wantSc[j], wantM[j])
		}
	}
	for j := range 8 {
		for v := byte(0); v < 64; v++ {
			var s [12]byte
			if j < 4 {
				s[j], s[j+4] = v, 63-v
			} else {
				s[j+4] = v&0xf | (63-v)&0xf<<4
				s[j-4] = (v >> 4) << 6
				s[j] = ((63 - v) >> 4) << 6
			}
			if sc, m := kScaleMin(s[:], j); sc != v || m != 63-v {
				t.Fatalf("sub-block %d, scale %d, min %d: got %d, %d", j, v, 63-v, sc, m)
			}
		}
	}
}

// TestQ3KScales checks the unpacking of Q3_K's sixteen 6-bit scales: each
// scale alone set to each value 0-63 (stored; -32 to 31 signed), packed as
// the layout describes, with every other scale 0 (stored 32).
func TestQ3KScales(t *testing.T) {
	for i := range 16 {
		for v := 0; v < 64; v++ {
			var u [16]int
			for k := range u {
				u[k] = 32
			}
			u[i] = v
			var s [12]byte
			for k := range u {
				s[k%8] |= byte(u[k]&0xf) << (4 * (k / 8))
				s[8+k%4] |= byte(u[k]>>4) << (2 * (k / 4))
			}
			got := q3KScales(s[:])
			for k := range got {
				if got[k] != u[k]-32 {
					t.Fatalf("scale %d stored as %d: unpacked scale %d is %d, want %d", i, v, k, got[k], u[k]-32)
				}
			}
		}
	}
}

// TestDequantizeSignedZero checks that Q5_0 keeps the sign of a zero
// product as ggml does: ggml's quantizer writes negative scales, and a
// quant of 16 (zero after the offset) times a negative d is -0. Adding a
// zero min, as Q5_1 does, would make it +0.
func TestDequantizeSignedZero(t *testing.T) {
	le := binary.LittleEndian
	// d = -1; element 0 has low nibble 0 and its fifth bit (qh bit 0) set:
	// (16-16)*-1 = -0. Element 1 has quant 8: (8-16)*-1 = 8.
	blk := le.AppendUint16(nil, 0xbc00)
	blk = le.AppendUint32(blk, 1)
	blk = append(blk, fill(16, 0x88)...)
	blk[6] = 0x80
	y := make([]float32, 32)
	if err := Dequantize(y, blk, Q5_0); err != nil {
		t.Fatal(err)
	}
	if y[0] != 0 || !math.Signbit(float64(y[0])) {
		t.Errorf("Q5_0 zero quant with d = -1: %v (sign bit %v), want -0", y[0], math.Signbit(float64(y[0])))
	}
	if y[1] != 8 { // quant 8: (8-16)*-1
		t.Errorf("Q5_0 y[1] = %v, want 8", y[1])
	}
}

// BenchmarkDequantize decodes 1 MiB-ish rows of random blocks of each
// K-quant and 4-bit non-linear type (the bit patterns do not matter to
// the speed).
func BenchmarkDequantize(b *testing.B) {
	for _, typ := range []GGMLType{Q4_0, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, IQ4_NL, IQ4_XS} {
		b.Run(typ.String(), func(b *testing.B) {
			const n = 1 << 18
			size, _ := typ.RowSize(n)
			src := make([]byte, size)
			for i := range src {
				src[i] = byte(i*131 + i>>7)
			}
			dst := make([]float32, n)
			b.SetBytes(4 * n)
			for b.Loop() {
				if err := Dequantize(dst, src, typ); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
