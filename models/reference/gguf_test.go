package reference

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/lldiff/lldiff/models"
)

// This file writes small GGUF files for the Load tests: synthetic models in
// t.TempDir(), in any of the reference's tensor types.

type ggufKV struct {
	key   string
	value any // uint32, float32 or string
}

type ggufTensor struct {
	name string
	typ  models.GGMLType
	dims []uint64 // ggml order
	data []byte
}

// writeGGUF writes a GGUF version 3 file: header, metadata, tensor table,
// then the tensor data, each tensor aligned to 32 bytes.
func writeGGUF(t *testing.T, kvs []ggufKV, tensors []ggufTensor) string {
	t.Helper()
	var b bytes.Buffer
	le := func(v any) {
		if err := binary.Write(&b, binary.LittleEndian, v); err != nil {
			t.Fatal(err)
		}
	}
	str := func(s string) { le(uint64(len(s))); b.WriteString(s) }
	b.WriteString("GGUF")
	le(uint32(3))
	le(uint64(len(tensors)))
	le(uint64(len(kvs)))
	for _, kv := range kvs {
		str(kv.key)
		switch v := kv.value.(type) {
		case uint32:
			le(uint32(4))
			le(v)
		case float32:
			le(uint32(6))
			le(v)
		case string:
			le(uint32(8))
			str(v)
		default:
			t.Fatalf("writeGGUF: value type %T", v)
		}
	}
	var off uint64
	for _, ts := range tensors {
		str(ts.name)
		le(uint32(len(ts.dims)))
		for _, d := range ts.dims {
			le(d)
		}
		le(uint32(ts.typ))
		le(off)
		off += (uint64(len(ts.data)) + 31) / 32 * 32
	}
	pad := func() {
		for b.Len()%32 != 0 {
			b.WriteByte(0)
		}
	}
	pad()
	for _, ts := range tensors {
		b.Write(ts.data)
		pad()
	}
	path := filepath.Join(t.TempDir(), "model.gguf")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// modelGGUF describes m as GGUF metadata and tensors, encoding the matrices
// with typ (norm weights stay F32, as llama.cpp's quantizer leaves them).
// Without output.weight when tied.
func modelGGUF(t *testing.T, m *Model, typ models.GGMLType, tied bool) ([]ggufKV, []ggufTensor) {
	t.Helper()
	c := m.Config
	kvs := []ggufKV{
		{"general.architecture", "llama"},
		{"llama.block_count", uint32(c.NLayer)},
		{"llama.embedding_length", uint32(c.DModel)},
		{"llama.feed_forward_length", uint32(c.DFF)},
		{"llama.attention.head_count", uint32(c.NHead)},
		{"llama.attention.head_count_kv", uint32(c.NHeadKV)},
		{"llama.attention.key_length", uint32(c.DHead)},
		{"llama.attention.value_length", uint32(c.DHead)},
		{"llama.rope.freq_base", float32(c.RopeBase)},
		{"llama.attention.layer_norm_rms_epsilon", float32(c.NormEps)},
	}
	vec := func(name string, v []float32) ggufTensor {
		return ggufTensor{name, models.F32, []uint64{uint64(len(v))}, encode(t, models.F32, v)}
	}
	mat := func(name string, l linear) ggufTensor {
		return ggufTensor{name, typ, []uint64{uint64(l.in), uint64(l.out)}, encode(t, typ, l.w)}
	}
	ts := []ggufTensor{
		mat("token_embd.weight", linear{in: c.DModel, out: c.NVocab, w: m.tokEmbd}),
		vec("output_norm.weight", m.outputNorm),
	}
	if !tied {
		ts = append(ts, mat("output.weight", m.unembed))
	}
	for l, ly := range m.layers {
		p := fmt.Sprintf("blk.%d.", l)
		ts = append(ts,
			vec(p+"attn_norm.weight", ly.attnNorm),
			mat(p+"attn_q.weight", ly.wq), mat(p+"attn_k.weight", ly.wk),
			mat(p+"attn_v.weight", ly.wv), mat(p+"attn_output.weight", ly.wo),
			vec(p+"ffn_norm.weight", ly.ffnNorm),
			mat(p+"ffn_gate.weight", ly.gate), mat(p+"ffn_up.weight", ly.up), mat(p+"ffn_down.weight", ly.down))
	}
	return kvs, ts
}

// encode stores v in type typ. The quantized encodings use the fixed scale
// d = 1/8 and fail the test unless every value is a multiple of 1/8 that the
// type holds exactly (Q8_0: -16..15.875, Q4_0: -1..0.875), so that decoding
// must give v back bit for bit.
func encode(t *testing.T, typ models.GGMLType, v []float32) []byte {
	t.Helper()
	var b []byte
	quant := func(x float32, lo, hi int) int {
		q := float64(x) * 8
		if q != math.Trunc(q) || q < float64(lo) || q > float64(hi) {
			t.Fatalf("encode %s: %g is not a multiple of 1/8 in range", typ, x)
		}
		return int(q)
	}
	const eighth = 0x3000 // 1/8 as an IEEE half
	switch typ {
	case models.F32:
		for _, x := range v {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		}
	case models.F16:
		for _, x := range v {
			b = binary.LittleEndian.AppendUint16(b, floatToHalf(t, x))
		}
	case models.Q8_0:
		for blk := 0; blk < len(v); blk += 32 {
			b = binary.LittleEndian.AppendUint16(b, eighth)
			for _, x := range v[blk : blk+32] {
				b = append(b, byte(int8(quant(x, -128, 127))))
			}
		}
	case models.Q4_0:
		for blk := 0; blk < len(v); blk += 32 {
			b = binary.LittleEndian.AppendUint16(b, eighth)
			for j := 0; j < 16; j++ {
				lo, hi := quant(v[blk+j], -8, 7)+8, quant(v[blk+j+16], -8, 7)+8
				b = append(b, byte(hi<<4|lo))
			}
		}
	default:
		t.Fatalf("encode: type %s", typ)
	}
	return b
}

// floatToHalf converts x to IEEE half, failing the test unless the conversion
// is exact (x a normal half value or zero).
func floatToHalf(t *testing.T, x float32) uint16 {
	t.Helper()
	if x == 0 {
		return 0
	}
	bits := math.Float32bits(x)
	sign := uint16(bits>>16) & 0x8000
	exp := int(bits>>23&0xff) - 127 + 15
	mant := bits & 0x7fffff
	if exp <= 0 || exp >= 31 || mant&0x1fff != 0 {
		t.Fatalf("floatToHalf: %g is not exactly a normal half", x)
	}
	return sign | uint16(exp)<<10 | uint16(mant>>13)
}
