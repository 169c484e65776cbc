package contrast

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/lldiff/lldiff/models"
)

// ControlVector is a llama.cpp control vector: a GGUF file with
// general.architecture = "controlvector" and one F32 tensor "direction.N"
// of n_embd values per layer N. llama.cpp (--control-vector, or
// llama_apply_adapter_cvec) adds direction.N to the output of layer N, the
// residual stream after the layer's MLP: resid_post.N in lldiff's names. It
// never adds anything to layer 0, and its loader,
// common_control_vector_load, rejects a file that has a direction.0.
//
// lldiff writes the vector measured at resid_post.N as direction.N, so that
// it is added where it was measured. llama.cpp's cvector-generator writes
// the vector measured at layer N as direction.N+1; Offset records which
// convention a file lldiff wrote follows.
type ControlVector struct {
	// ModelHint is controlvector.model_hint: the architecture of the model
	// the vector was made for ("llama").
	ModelHint string
	// Directions maps a layer N, as in the tensor name direction.N, to its
	// direction. All directions have the same length.
	Directions map[int][]float32
	// Meta holds string metadata under the lldiff.* keys (method, hook,
	// model, ...), written and read back as is; llama.cpp ignores them.
	Meta map[string]string
	// Offset is the layer offset of the file: direction.N holds the vector
	// measured at resid_post.(N−Offset). lldiff writes 0 unless asked for
	// cvector-generator's convention (1). -1 when a file read does not say
	// (files from other tools).
	Offset int
}

// Metadata keys of control-vector files.
const (
	cvecArch        = "controlvector"
	keyModelHint    = "controlvector.model_hint"
	keyLayerCount   = "controlvector.layer_count"
	keyLayerOffset  = "lldiff.layer_offset"
	cvecMetaPrefix  = "lldiff."
	directionPrefix = "direction."
)

// NEmbd returns the length of the directions, 0 when there are none.
func (cv *ControlVector) NEmbd() int {
	for _, v := range cv.Directions {
		return len(v)
	}
	return 0
}

// Layers returns the layers that have a direction, in ascending order.
func (cv *ControlVector) Layers() []int {
	ls := make([]int, 0, len(cv.Directions))
	for l := range cv.Directions {
		ls = append(ls, l)
	}
	sort.Ints(ls)
	return ls
}

// check returns an error for a vector llama.cpp would refuse.
func (cv *ControlVector) check() error {
	if len(cv.Directions) == 0 {
		return fmt.Errorf("control vector has no directions")
	}
	n := cv.NEmbd()
	for _, l := range cv.Layers() {
		v := cv.Directions[l]
		switch {
		case l < 1:
			return fmt.Errorf("control vector: direction.%d: llama.cpp never adds a vector to layer %d and refuses files that hold one; layers start at 1", l, l)
		case len(v) != n || n == 0:
			return fmt.Errorf("control vector: direction.%d has %d values, other directions %d", l, len(v), n)
		}
		for i, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return fmt.Errorf("control vector: direction.%d[%d] is %v", l, i, x)
			}
		}
	}
	return nil
}

// WriteFile writes the control vector as a GGUF file llama.cpp loads with
// --control-vector. It refuses to replace an existing file unless
// overwrite is set.
func (cv *ControlVector) WriteFile(path string, overwrite bool) error {
	if err := cv.check(); err != nil {
		return err
	}
	w := &models.Writer{Overwrite: overwrite}
	if err := w.AddKV("general.architecture", cvecArch); err != nil {
		return err
	}
	if err := w.AddKV(keyModelHint, cv.ModelHint); err != nil {
		return err
	}
	// cvector-generator writes the number of direction tensors as int32.
	if err := w.AddKV(keyLayerCount, int32(len(cv.Directions))); err != nil {
		return err
	}
	if cv.Offset >= 0 {
		if err := w.AddKV(keyLayerOffset, uint32(cv.Offset)); err != nil {
			return err
		}
	}
	keys := make([]string, 0, len(cv.Meta))
	for k := range cv.Meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		full := cvecMetaPrefix + k
		if full == keyLayerOffset {
			return fmt.Errorf("control vector: metadata key %q is reserved: set Offset", k)
		}
		if err := w.AddKV(full, cv.Meta[k]); err != nil {
			return err
		}
	}
	for _, l := range cv.Layers() {
		v := cv.Directions[l]
		buf := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(x))
		}
		if err := w.AddTensor(directionPrefix+strconv.Itoa(l), models.F32, []uint64{uint64(len(v))}, buf); err != nil {
			return err
		}
	}
	return w.WriteFile(path)
}

// ReadControlVector reads a control-vector GGUF file with the rules of
// llama.cpp's loader (common_control_vector_load): every tensor is named
// direction.N with N ≥ 1, is F32 and one-dimensional, and all have the same
// length. Where llama.cpp logs and skips the file, ReadControlVector
// returns an error that says what is wrong.
func ReadControlVector(path string) (*ControlVector, error) {
	f, err := models.Open(path)
	if err != nil {
		return nil, err
	}
	cv := &ControlVector{Directions: map[int][]float32{}, Meta: map[string]string{}, Offset: -1}
	arch := f.Architecture()
	cv.ModelHint, _ = f.String(keyModelHint)
	if off, ok := f.Uint(keyLayerOffset); ok && off < 1<<20 {
		cv.Offset = int(off)
	}
	for _, kv := range f.KVs {
		if k, ok := strings.CutPrefix(kv.Key, cvecMetaPrefix); ok && kv.Key != keyLayerOffset {
			if s, ok := kv.Value.(string); ok {
				cv.Meta[k] = s
			}
		}
	}
	if len(f.Tensors) == 0 {
		return nil, fmt.Errorf("%s has no direction tensors: not a control vector", path)
	}
	n := -1
	for _, t := range f.Tensors {
		rest, ok := strings.CutPrefix(t.Name, directionPrefix)
		l, err := strconv.Atoi(rest)
		if !ok || err != nil || l < 0 {
			hint := ""
			if arch != cvecArch {
				hint = fmt.Sprintf(" (general.architecture is %q: is this a model rather than a control vector?)", arch)
			}
			return nil, fmt.Errorf("%s: tensor %q is not named direction.N, as every tensor of a control vector must be%s", path, t.Name, hint)
		}
		switch {
		case l == 0:
			return nil, fmt.Errorf("%s: has direction.0, which llama.cpp refuses (it never adds a vector to layer 0)", path)
		case t.Type != models.F32:
			return nil, fmt.Errorf("%s: %s has type %s; llama.cpp loads only F32 directions", path, t.Name, t.Type)
		case len(t.Dims) != 1:
			return nil, fmt.Errorf("%s: %s has %d dimensions; a direction is one-dimensional", path, t.Name, len(t.Dims))
		case n >= 0 && int(t.Dims[0]) != n:
			return nil, fmt.Errorf("%s: %s has %d values, other directions %d", path, t.Name, t.Dims[0], n)
		}
		n = int(t.Dims[0])
		v, err := f.ReadTensorFloat32(t.Name)
		if err != nil {
			return nil, err
		}
		for i, x := range v {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return nil, fmt.Errorf("%s: %s[%d] is %v: a direction must hold finite numbers (the file is damaged, or was made from activations that overflowed)", path, t.Name, i, x)
			}
		}
		cv.Directions[l] = v
	}
	return cv, nil
}

// PerLayer lays the directions out by layer for a model of nLayer layers,
// each multiplied by scale: out[N] is direction.N·scale, nil where the file
// has none or N is outside [from, to]. Directions at layers the model does
// not have (N ≥ nLayer) are left out and listed in dropped.
func (cv *ControlVector) PerLayer(nLayer int, scale float32, from, to int) (out [][]float32, dropped []int) {
	out = make([][]float32, nLayer)
	for _, l := range cv.Layers() {
		if l >= nLayer {
			dropped = append(dropped, l)
			continue
		}
		if l < from || l > to {
			continue
		}
		v := cv.Directions[l]
		s := make([]float32, len(v))
		for i, x := range v {
			s[i] = x * scale
		}
		out[l] = s
	}
	return out, dropped
}
