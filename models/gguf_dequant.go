package models

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Float16ToFloat32 returns the value of the IEEE 754 half-precision number
// with bits h. It is exact.
func Float16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	man := uint32(h & 0x3ff)
	switch exp {
	case 0x1f: // Inf, NaN
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case 0: // zero, subnormal: man * 2^-24
		f := float32(man) * (1.0 / (1 << 24))
		if sign != 0 {
			f = -f
		}
		return f
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | man<<13)
}

// Float32ToFloat16 returns the half-precision number nearest to f, ties to
// even, as ggml's reference conversion does. Values too large for half
// precision become ±Inf; NaN stays NaN.
func Float32ToFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	man := b & 0x7fffff
	if exp == 0xff {
		if man != 0 {
			return sign | 0x7e00 | uint16(man>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign // below half the smallest subnormal
		}
		man |= 0x800000
		shift := uint32(14 - e)
		h := man >> shift
		rem := man & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	}
	h := uint32(e)<<10 | man>>13
	rem := man & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++ // a carry into the exponent is right, up to Inf
	}
	return sign | uint16(h)
}

// BFloat16ToFloat32 returns the value of the bfloat16 number with bits h.
func BFloat16ToFloat32(h uint16) float32 {
	return math.Float32frombits(uint32(h) << 16)
}

// CanDequantize reports whether Dequantize supports type t.
func CanDequantize(t GGMLType) bool {
	switch t {
	case F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
		Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, IQ4_NL, IQ4_XS:
		return true
	}
	return false
}

// Dequantize decodes len(dst) elements of type t from src into dst. It
// supports F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, the K-quants
// Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and Q8_K, IQ4_NL and IQ4_XS, giving ggml's
// values to the bit, and returns an error for other types. It panics if
// len(dst) is not a multiple of the block size of t or len(src) is not the
// size of len(dst) elements.
func Dequantize(dst []float32, src []byte, t GGMLType) error {
	if !CanDequantize(t) {
		return fmt.Errorf("models: cannot dequantize ggml type %s", t)
	}
	want, ok := t.RowSize(uint64(len(dst)))
	if !ok || uint64(len(src)) != want {
		panic(fmt.Sprintf("models: Dequantize %s: %d elements need %d bytes, have %d", t, len(dst), want, len(src)))
	}
	le := binary.LittleEndian
	switch t {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(le.Uint32(src[4*i:]))
		}
	case F16:
		for i := range dst {
			dst[i] = Float16ToFloat32(le.Uint16(src[2*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = BFloat16ToFloat32(le.Uint16(src[2*i:]))
		}
	case Q8_0:
		for b := 0; b < len(dst)/32; b++ {
			blk := src[b*34 : b*34+34]
			d := Float16ToFloat32(le.Uint16(blk))
			y := dst[b*32 : b*32+32]
			for j := range y {
				y[j] = float32(int8(blk[2+j])) * d
			}
		}
	case Q4_0:
		for b := 0; b < len(dst)/32; b++ {
			blk := src[b*18 : b*18+18]
			d := Float16ToFloat32(le.Uint16(blk))
			y := dst[b*32 : b*32+32]
			for j := 0; j < 16; j++ {
				q := blk[2+j]
				y[j] = float32(int(q&0xf)-8) * d
				y[j+16] = float32(int(q>>4)-8) * d
			}
		}
	case Q4_1:
		for b := 0; b < len(dst)/32; b++ {
			blk := src[b*20 : b*20+20]
			d := Float16ToFloat32(le.Uint16(blk))
			m := Float16ToFloat32(le.Uint16(blk[2:]))
			y := dst[b*32 : b*32+32]
			for j := 0; j < 16; j++ {
				q := blk[4+j]
				y[j] = float32(q&0xf)*d + m
				y[j+16] = float32(q>>4)*d + m
			}
		}
	case Q5_0, Q5_1:
		size, hdr := 22, 2
		if t == Q5_1 {
			size, hdr = 24, 4
		}
		for b := 0; b < len(dst)/32; b++ {
			blk := src[b*size : b*size+size]
			d := Float16ToFloat32(le.Uint16(blk))
			var m float32
			off := -16
			if t == Q5_1 {
				m = Float16ToFloat32(le.Uint16(blk[2:]))
				off = 0
			}
			qh := le.Uint32(blk[hdr:])
			qs := blk[hdr+4:]
			y := dst[b*32 : b*32+32]
			for j := 0; j < 16; j++ {
				h0 := int((qh>>j)<<4) & 0x10
				h1 := int(qh>>(j+12)) & 0x10
				q0, q1 := float32((int(qs[j]&0xf)|h0)+off), float32((int(qs[j]>>4)|h1)+off)
				if t == Q5_0 {
					// no +m: 0*d is -0 for a negative d, and stays -0 as in ggml
					y[j], y[j+16] = q0*d, q1*d
				} else {
					y[j], y[j+16] = q0*d+m, q1*d+m
				}
			}
		}
	case Q2_K:
		dequantQ2K(dst, src)
	case Q3_K:
		dequantQ3K(dst, src)
	case Q4_K:
		dequantQ4K(dst, src)
	case Q5_K:
		dequantQ5K(dst, src)
	case Q6_K:
		dequantQ6K(dst, src)
	case Q8_K:
		dequantQ8K(dst, src)
	case IQ4_NL:
		dequantIQ4NL(dst, src)
	case IQ4_XS:
		dequantIQ4XS(dst, src)
	}
	return nil
}

// ReadTensorFloat32 reads the named tensor from f.Path and decodes it to
// float32 (see Dequantize for the supported types). The result is in ggml
// order: row r of a 2D tensor is out[r*Dims[0] : (r+1)*Dims[0]].
func (f *File) ReadTensorFloat32(name string) ([]float32, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q", f.displayPath(), name)
	}
	if !CanDequantize(t.Type) {
		return nil, fmt.Errorf("%s: tensor %q has type %s, which lldiff cannot decode yet", f.displayPath(), name, t.Type)
	}
	raw, err := f.ReadTensor(name)
	if err != nil {
		return nil, err
	}
	out := make([]float32, t.NumElements())
	if err := Dequantize(out, raw, t.Type); err != nil {
		return nil, err
	}
	return out, nil
}
