package contrast

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
)

func TestControlVectorRoundTrip(t *testing.T) {
	cv := &ControlVector{
		ModelHint: "llama",
		Directions: map[int][]float32{
			1: {1, -2, 3.5},
			4: {float32(math.Pi), 0, -1e-30},
			2: {0, 0, 1},
		},
		Meta:   map[string]string{"method": "mean", "hook": "resid_post"},
		Offset: 1,
	}
	p := filepath.Join(t.TempDir(), "v.gguf")
	if err := cv.WriteFile(p, false); err != nil {
		t.Fatal(err)
	}
	if err := cv.WriteFile(p, false); err == nil {
		t.Error("WriteFile replaced an existing file without overwrite")
	}
	// the header as llama.cpp's loader sees it
	f, err := models.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if f.Architecture() != "controlvector" {
		t.Errorf("general.architecture = %q", f.Architecture())
	}
	if v, _ := f.Get("controlvector.layer_count"); v != int32(3) {
		t.Errorf("controlvector.layer_count = %#v, want int32(3) as cvector-generator writes it", v)
	}
	if h, _ := f.String("controlvector.model_hint"); h != "llama" {
		t.Errorf("model_hint = %q", h)
	}
	var names []string
	for _, ti := range f.Tensors {
		names = append(names, ti.Name)
		if ti.Type != models.F32 || len(ti.Dims) != 1 || ti.Dims[0] != 3 {
			t.Errorf("%s: %s %v, want F32 [3]", ti.Name, ti.Type, ti.Dims)
		}
	}
	if got := strings.Join(names, ","); got != "direction.1,direction.2,direction.4" {
		t.Errorf("tensors %s, want direction.1,direction.2,direction.4 in layer order", got)
	}

	back, err := ReadControlVector(p)
	if err != nil {
		t.Fatal(err)
	}
	if back.ModelHint != "llama" || back.Offset != 1 || back.Meta["method"] != "mean" || back.Meta["hook"] != "resid_post" {
		t.Errorf("metadata read back: %+v", back)
	}
	for l, v := range cv.Directions {
		w := back.Directions[l]
		for i := range v {
			// bit-exact: F32 written and read as is
			if math.Float32bits(w[i]) != math.Float32bits(v[i]) {
				t.Errorf("direction.%d[%d] = %v, want %v", l, i, w[i], v[i])
			}
		}
	}

	per, dropped := back.PerLayer(3, 2, 0, 99)
	if len(per) != 3 || per[0] != nil || per[1][1] != -4 || per[2][2] != 2 {
		t.Errorf("PerLayer(3, scale 2) = %v", per)
	}
	if len(dropped) != 1 || dropped[0] != 4 {
		t.Errorf("dropped = %v, want [4] (the model has layers 0..2)", dropped)
	}
	per, _ = back.PerLayer(5, 1, 2, 3)
	if per[1] != nil || per[2] == nil || per[4] != nil {
		t.Errorf("PerLayer with range 2..3 = %v", per)
	}
}

func TestControlVectorWriteErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		dirs map[int][]float32
		want string
	}{
		{"layer 0", map[int][]float32{0: {1}, 1: {1}}, "never adds a vector to layer 0"},
		{"lengths", map[int][]float32{1: {1, 2}, 2: {1}}, "values"},
		{"nan", map[int][]float32{1: {float32(math.NaN())}}, "NaN"},
		{"none", map[int][]float32{}, "no directions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cv := &ControlVector{ModelHint: "llama", Directions: tc.dirs}
			err := cv.WriteFile(filepath.Join(dir, tc.name+".gguf"), false)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestReadControlVectorErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, add func(w *models.Writer) error) string {
		w := &models.Writer{}
		if err := w.AddKV("general.architecture", "controlvector"); err != nil {
			t.Fatal(err)
		}
		if err := add(w); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := w.WriteFile(p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	f32 := func(n int) []byte { return make([]byte, 4*n) }
	for _, tc := range []struct {
		name string
		add  func(w *models.Writer) error
		want string
	}{
		{"no tensors", func(w *models.Writer) error { return nil }, "no direction tensors"},
		{"direction.0", func(w *models.Writer) error {
			return w.AddTensor("direction.0", models.F32, []uint64{4}, f32(4))
		}, "direction.0"},
		{"bad name", func(w *models.Writer) error {
			return w.AddTensor("direction.x", models.F32, []uint64{4}, f32(4))
		}, "not named direction.N"},
		{"f16", func(w *models.Writer) error {
			return w.AddTensor("direction.1", models.F16, []uint64{4}, make([]byte, 8))
		}, "only F32"},
		{"2-D", func(w *models.Writer) error {
			return w.AddTensor("direction.1", models.F32, []uint64{2, 2}, f32(4))
		}, "one-dimensional"},
		{"lengths", func(w *models.Writer) error {
			if err := w.AddTensor("direction.1", models.F32, []uint64{4}, f32(4)); err != nil {
				return err
			}
			return w.AddTensor("direction.2", models.F32, []uint64{3}, f32(3))
		}, "other directions 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadControlVector(write(tc.name+".gguf", tc.add))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	// a model file passed by mistake
	if _, err := ReadControlVector(testmodels.Path(t, testmodels.Stories260K)); err == nil || !strings.Contains(err.Error(), "is this a model") {
		t.Errorf("model file: err = %v, want a hint that it is a model", err)
	}
}
