package models

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
)

// sharedModel is testmodels.Path.
func sharedModel(tb testing.TB, name string) string {
	tb.Helper()
	return testmodels.Path(tb, name)
}

// rawKV is a metadata entry encoded without any checks.
type rawKV struct {
	key string
	typ uint32
	val []byte // encoded value, after the type
}

// rawTensor is a tensor table entry encoded without any checks.
type rawTensor struct {
	name string
	dims []uint64
	typ  uint32
	off  uint64
}

// rawGGUF builds GGUF bytes field by field, so tests can write files that
// no correct writer would.
type rawGGUF struct {
	magic    string
	version  uint32
	nTensors *uint64 // override the tensor count
	nKV      *uint64 // override the metadata count
	kvs      []rawKV
	tensors  []rawTensor
	align    int // padding before the data; 0 means 32
	data     int // bytes of tensor data after the padding
}

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
func rawStr(s string) []byte {
	return append(le64(uint64(len(s))), s...)
}

func kvU32(key string, v uint32) rawKV { return rawKV{key, uint32(ggufUint32), le32(v)} }
func kvStr(key, v string) rawKV        { return rawKV{key, uint32(ggufString), rawStr(v)} }

func (g rawGGUF) bytes() []byte {
	var b bytes.Buffer
	b.WriteString(g.magic)
	b.Write(le32(g.version))
	nt, nk := uint64(len(g.tensors)), uint64(len(g.kvs))
	if g.nTensors != nil {
		nt = *g.nTensors
	}
	if g.nKV != nil {
		nk = *g.nKV
	}
	b.Write(le64(nt))
	b.Write(le64(nk))
	for _, kv := range g.kvs {
		b.Write(rawStr(kv.key))
		b.Write(le32(kv.typ))
		b.Write(kv.val)
	}
	for _, t := range g.tensors {
		b.Write(rawStr(t.name))
		b.Write(le32(uint32(len(t.dims))))
		for _, d := range t.dims {
			b.Write(le64(d))
		}
		b.Write(le32(t.typ))
		b.Write(le64(t.off))
	}
	a := g.align
	if a == 0 {
		a = 32
	}
	if len(g.tensors) > 0 {
		for b.Len()%a != 0 {
			b.WriteByte(0)
		}
	}
	for i := 0; i < g.data; i++ {
		b.WriteByte(byte(i))
	}
	return b.Bytes()
}

// baseGGUF is a small valid file: two F32 tensors, "a" [8] at 0 and "b"
// [8 2] at 32, and 96 bytes of data.
func baseGGUF() rawGGUF {
	return rawGGUF{
		magic:   "GGUF",
		version: 3,
		kvs: []rawKV{
			kvStr("general.architecture", "llama"),
			kvU32("general.alignment", 32),
		},
		tensors: []rawTensor{
			{"a", []uint64{8}, uint32(F32), 0},
			{"b", []uint64{8, 2}, uint32(F32), 32},
		},
		data: 96,
	}
}

func ptr[T any](v T) *T { return &v }

// writeTemp writes b to a file in a test directory and returns its path.
func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// containsAll reports whether s contains every one of subs.
func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
