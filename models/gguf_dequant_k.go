package models

import (
	"encoding/binary"
	"math"
)

// Decoders for the K-quants (super-blocks of 256 elements) and the 4-bit
// non-linear types, written from the block structs of ggml's ggml-common.h
// (block_q2_K … block_q8_K, block_iq4_nl, block_iq4_xs). Each function
// decodes len(dst)/blockSize whole blocks of src; Dequantize has checked
// the sizes.
//
// Every value is a product of at most three factors (a float16 scale, a
// small integer scale, a small integer quant) and, for the types with a
// minimum, one subtraction. The factors are multiplied in the order ggml
// multiplies them, in float32, so the results are ggml's to the bit; for
// most types every product is exact anyway (fewer than 24 significant bits)
// and only the subtraction rounds.

// kvaluesIQ4NL are the 16 levels of IQ4_NL and IQ4_XS (kvalues_iq4nl): a
// 4-bit quant q stands for kvaluesIQ4NL[q] times the block scale.
var kvaluesIQ4NL = [16]int8{-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}

// f16At reads the float16 at b[0:2].
func f16At(b []byte) float32 { return Float16ToFloat32(binary.LittleEndian.Uint16(b)) }

// dequantQ2K decodes Q2_K, 84 bytes per 256 elements:
//
//	scales [16]byte  per 16-element sub-block: scale (low nibble), min (high nibble)
//	qs     [64]byte  2-bit quants, four per byte
//	d      float16   multiplies the sub-block scales
//	dmin   float16   multiplies the sub-block mins
//
// Element e lies in sub-block e/16 and is d*scale*q - dmin*min. Its quant
// sits in qs[32*(e/128) + e%32] at bits 2*((e%128)/32): each group of 32
// bytes holds 128 elements, 32 per bit pair.
func dequantQ2K(dst []float32, src []byte) {
	for b := 0; b < len(dst)/qk; b++ {
		blk := src[b*84 : b*84+84]
		scales, qs := blk[:16], blk[16:80]
		d, dmin := f16At(blk[80:]), f16At(blk[82:])
		y := dst[b*qk : b*qk+qk]
		for sb := 0; sb < 16; sb++ {
			dl := d * float32(scales[sb]&0xf)
			ml := dmin * float32(scales[sb]>>4)
			hb, pair := sb/8, (sb%8)/2
			q := qs[32*hb+16*(sb%2):]
			for l := 0; l < 16; l++ {
				y[16*sb+l] = dl*float32((q[l]>>(2*pair))&3) - ml
			}
		}
	}
}

// q3KScales unpacks the sixteen 6-bit scales of a Q3_K block from its 12
// scale bytes: bytes 0-7 hold the low four bits (sub-blocks 0-7 in the low
// nibbles, 8-15 in the high nibbles), bytes 8-11 the high two bits (byte
// 8+i%4, bit pair i/4, for sub-block i). The stored values are offset by
// 32; the result is the signed scale.
func q3KScales(s []byte) (out [16]int) {
	for i := range out {
		lo := s[i%8] >> (4 * (i / 8)) & 0xf
		hi := s[8+i%4] >> (2 * (i / 4)) & 3
		out[i] = int(lo|hi<<4) - 32
	}
	return out
}

// dequantQ3K decodes Q3_K, 110 bytes per 256 elements:
//
//	hmask  [32]byte  the third (high) bit of each quant
//	qs     [64]byte  the low two bits, laid out as in Q2_K
//	scales [12]byte  sixteen 6-bit scales (see q3KScales)
//	d      float16
//
// Element e lies in sub-block e/16 and is d*scale*(q-4) where q is its
// three-bit quant; the high bit sits in hmask[e%32] at bit e/32.
func dequantQ3K(dst []float32, src []byte) {
	for b := 0; b < len(dst)/qk; b++ {
		blk := src[b*110 : b*110+110]
		hmask, qs := blk[:32], blk[32:96]
		sc := q3KScales(blk[96:108])
		d := f16At(blk[108:])
		y := dst[b*qk : b*qk+qk]
		for sb := 0; sb < 16; sb++ {
			dl := d * float32(sc[sb])
			hb, pair := sb/8, (sb%8)/2
			off := 16 * (sb % 2)
			q := qs[32*hb+off:]
			for l := 0; l < 16; l++ {
				e := 16*sb + l
				v := int((q[l]>>(2*pair))&3) - 4
				if hmask[off+l]>>(e/32)&1 == 1 {
					v += 4
				}
				y[e] = dl * float32(v)
			}
		}
	}
}

// kScaleMin returns the 6-bit scale and min of sub-block j (0-7) of a Q4_K
// or Q5_K block from its 12 scale bytes s. Sub-blocks 0-3 keep theirs in
// the low six bits of s[j] (scale) and s[j+4] (min). Sub-blocks 4-7 keep
// the low four bits in s[j+4] (scale in the low nibble, min in the high)
// and the high two bits in the top bits of s[j-4] (scale) and s[j] (min).
func kScaleMin(s []byte, j int) (scale, min byte) {
	if j < 4 {
		return s[j] & 63, s[j+4] & 63
	}
	return s[j+4]&0xf | (s[j-4]>>6)<<4, s[j+4]>>4 | (s[j]>>6)<<4
}

// dequantQ4K decodes Q4_K, 144 bytes per 256 elements:
//
//	d      float16    multiplies the sub-block scales
//	dmin   float16    multiplies the sub-block mins
//	scales [12]byte   eight 6-bit scales and mins (see kScaleMin)
//	qs     [128]byte  4-bit quants
//
// Element e lies in sub-block e/32 and is d*scale*q - dmin*min. Each 32
// bytes of qs hold 64 elements: the even sub-block in the low nibbles,
// the odd one in the high nibbles.
func dequantQ4K(dst []float32, src []byte) {
	for b := 0; b < len(dst)/qk; b++ {
		blk := src[b*144 : b*144+144]
		d, dmin := f16At(blk), f16At(blk[2:])
		scales, qs := blk[4:16], blk[16:144]
		y := dst[b*qk : b*qk+qk]
		for sb := 0; sb < 8; sb++ {
			sc, m := kScaleMin(scales, sb)
			dl, ml := d*float32(sc), dmin*float32(m)
			q := qs[32*(sb/2) : 32*(sb/2)+32]
			shift := 4 * (sb % 2)
			for l := range q {
				y[32*sb+l] = dl*float32((q[l]>>shift)&0xf) - ml
			}
		}
	}
}

// dequantQ5K decodes Q5_K, 176 bytes per 256 elements: Q4_K's fields with
//
//	qh [32]byte  the fifth (high) bit of each quant
//
// between scales and qs. The high bit of element e sits in qh[e%32] at bit
// e/32 (its sub-block).
func dequantQ5K(dst []float32, src []byte) {
	for b := 0; b < len(dst)/qk; b++ {
		blk := src[b*176 : b*176+176]
		d, dmin := f16At(blk), f16At(blk[2:])
		scales, qh, qs := blk[4:16], blk[16:48], blk[48:176]
		y := dst[b*qk : b*qk+qk]
		for sb := 0; sb < 8; sb++ {
			sc, m := kScaleMin(scales, sb)
			dl, ml := d*float32(sc), dmin*float32(m)
			q := qs[32*(sb/2) : 32*(sb/2)+32]
			shift := 4 * (sb % 2)
			for l := range q {
				v := (q[l]>>shift)&0xf | (qh[l]>>sb&1)<<4
				y[32*sb+l] = dl*float32(v) - ml
			}
		}
	}
}

// dequantQ6K decodes Q6_K, 210 bytes per 256 elements:
//
//	ql     [128]byte  low four bits of each quant
//	qh     [64]byte   high two bits of each quant
//	scales [16]int8   one per 16-element sub-block
//	d      float16
//
// Element e lies in sub-block e/16 and is d*scale*(q-32). Each half of the
// block (128 elements) has 64 bytes of ql and 32 of qh; within a half,
// element r = 32*k + l (k = 0..3) keeps its low bits in ql[l + 32*(k%2)]
// (low nibble for k < 2, high nibble otherwise) and its high bits in
// qh[l] at bit pair k.
func dequantQ6K(dst []float32, src []byte) {
	for b := 0; b < len(dst)/qk; b++ {
		blk := src[b*210 : b*210+210]
		d := f16At(blk[208:])
		// ggml computes (d*scale)*q; d*scale is exact (at most 19
		// significant bits), so each value is the exact product rounded
		// once, whichever way it is grouped.
		var ds [16]float32
		for i := range ds {
			ds[i] = d * float32(int8(blk[192+i]))
		}
		for h := 0; h < 2; h++ {
			ql, qh := blk[64*h:64*h+64], blk[128+32*h:128+32*h+32]
			y := dst[b*qk+128*h : b*qk+128*h+128]
			s := ds[8*h : 8*h+8]
			for l := 0; l < 32; l++ {
				lo, hi, bits := ql[l], ql[l+32], qh[l]
				i := l / 16
				y[l] = s[i] * float32(int(lo&0xf|(bits&3)<<4)-32)
				y[l+32] = s[i+2] * float32(int(hi&0xf|(bits>>2&3)<<4)-32)
				y[l+64] = s[i+4] * float32(int(lo>>4|(bits>>4&3)<<4)-32)
				y[l+96] = s[i+6] * float32(int(hi>>4|(bits>>6)<<4)-32)
			}
		}
	}
}

// dequantQ8K decodes Q8_K, 292 bytes per 256 elements:
//
//	d     float32    scale (a float32, unlike the other types)
//	qs    [256]int8  quants
//	bsums [16]int16  sums of 16 quants each, for dot products; not needed
//
// Element e is d*qs[e]. ggml uses Q8_K for the activations of K-quant dot
// products; llama.cpp's quantizer does not write it to model files.
func dequantQ8K(dst []float32, src []byte) {
	for b := 0; b < len(dst)/qk; b++ {
		blk := src[b*292 : b*292+292]
		d := math.Float32frombits(binary.LittleEndian.Uint32(blk))
		y := dst[b*qk : b*qk+qk]
		for e := range y {
			y[e] = d * float32(int8(blk[4+e]))
		}
	}
}

// dequantIQ4NL decodes IQ4_NL, 18 bytes per 32 elements: Q4_0's layout (d,
// then element j in the low nibble of byte j and element j+16 in its high
// nibble), but a quant q stands for d*kvaluesIQ4NL[q].
func dequantIQ4NL(dst []float32, src []byte) {
	for b := 0; b < len(dst)/32; b++ {
		blk := src[b*18 : b*18+18]
		d := f16At(blk)
		y := dst[b*32 : b*32+32]
		for j := 0; j < 16; j++ {
			q := blk[2+j]
			y[j] = d * float32(kvaluesIQ4NL[q&0xf])
			y[j+16] = d * float32(kvaluesIQ4NL[q>>4])
		}
	}
}

// dequantIQ4XS decodes IQ4_XS, 136 bytes per 256 elements:
//
//	d        float16
//	scalesH  uint16     high two bits of the 6-bit scale of sub-block i at bits 2i, 2i+1
//	scalesL  [4]byte    low four bits: sub-block i in byte i/2, low nibble for even i
//	qs       [128]byte  4-bit quants, 16 bytes per 32-element sub-block laid out as IQ4_NL
//
// Element j of sub-block i is d*(scale-32)*kvaluesIQ4NL[q].
func dequantIQ4XS(dst []float32, src []byte) {
	for b := 0; b < len(dst)/qk; b++ {
		blk := src[b*136 : b*136+136]
		d := f16At(blk)
		scalesH := binary.LittleEndian.Uint16(blk[2:])
		scalesL, qs := blk[4:8], blk[8:136]
		y := dst[b*qk : b*qk+qk]
		for sb := 0; sb < 8; sb++ {
			ls := int(scalesL[sb/2]>>(4*(sb%2))&0xf) | int(scalesH>>(2*sb)&3)<<4
			dl := d * float32(ls-32)
			q := qs[16*sb : 16*sb+16]
			for j := 0; j < 16; j++ {
				y[32*sb+j] = dl * float32(kvaluesIQ4NL[q[j]&0xf])
				y[32*sb+j+16] = dl * float32(kvaluesIQ4NL[q[j]>>4])
			}
		}
	}
}
