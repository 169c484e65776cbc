package llamacpp

/*
#include <stdlib.h>
#include "llama.h"
*/
import "C"

import (
	"github.com/lldiff/lldiff/internal/outfile"

	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unsafe"

	"github.com/lldiff/lldiff/models"
)

// quantTypes maps the names lldiff accepts to llama.cpp file types.
var quantTypes = map[string]C.enum_llama_ftype{
	"F32":    C.LLAMA_FTYPE_ALL_F32,
	"F16":    C.LLAMA_FTYPE_MOSTLY_F16,
	"Q8_0":   C.LLAMA_FTYPE_MOSTLY_Q8_0,
	"Q4_0":   C.LLAMA_FTYPE_MOSTLY_Q4_0,
	"Q4_K":   C.LLAMA_FTYPE_MOSTLY_Q4_K_S,
	"Q4_K_S": C.LLAMA_FTYPE_MOSTLY_Q4_K_S,
	"Q4_K_M": C.LLAMA_FTYPE_MOSTLY_Q4_K_M,
	"Q6_K":   C.LLAMA_FTYPE_MOSTLY_Q6_K,
	"Q2_K":   C.LLAMA_FTYPE_MOSTLY_Q2_K,
	"Q3_K_M": C.LLAMA_FTYPE_MOSTLY_Q3_K_M,
	"Q5_K_M": C.LLAMA_FTYPE_MOSTLY_Q5_K_M,
	"Q5_0":   C.LLAMA_FTYPE_MOSTLY_Q5_0,
}

// QuantTypes lists the types Quantize accepts.
func QuantTypes() []string {
	var s []string
	for k := range quantTypes {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// QuantizeParams configure Quantize.
type QuantizeParams struct {
	// Type is the target: F32, F16, Q8_0, Q4_0, Q5_0, Q2_K, Q3_K_M, Q4_K (= Q4_K_S),
	// Q4_K_M, Q5_K_M, Q6_K.
	Type string
	// Pure quantizes every matrix to Type; otherwise llama.cpp's mixture
	// for that file type is used (for example Q6_K output.weight in Q4_K_M).
	Pure bool
	// Threads for quantizing (default: physical cores).
	Threads int
	// Overwrite allows replacing an existing output file.
	Overwrite bool
}

// Quantize writes a quantized copy of the GGUF model in to out with
// llama.cpp's quantizer. Tensors whose rows do not fit the type's block
// (stories260K's 172-wide ffn_down for Q4_0) fall back to another type as
// llama.cpp decides.
func Quantize(in, out string, p QuantizeParams) error {
	Init()
	ft, ok := quantTypes[strings.ToUpper(p.Type)]
	if !ok {
		return fmt.Errorf("cannot quantize to %q: choose one of %s", p.Type, strings.Join(QuantTypes(), ", "))
	}
	f, err := models.Open(in)
	if err != nil {
		return err
	}
	if err := f.CheckRunnable(); err != nil {
		return err
	}
	if p.Pure {
		if err := checkPureRows(f, strings.ToUpper(p.Type)); err != nil {
			return err
		}
	}
	if st, err := os.Stat(out); err == nil && (!st.Mode().IsRegular() || !p.Overwrite) {
		if !st.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file: choose a file path for the quantized model", out)
		}
		return fmt.Errorf("%s already exists: choose another name or pass --force to replace it", out)
	}
	threads := p.Threads
	if threads <= 0 {
		threads = PhysicalCores()
	}
	// a temporary file of its own in the output's directory: a fixed name
	// such as out.tmp could be a file of the user's
	tf, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := tf.Name()
	tf.Close()
	defer outfile.Track(tmp)() // removed on SIGINT/SIGTERM too
	qp := C.llama_model_quantize_default_params()
	qp.nthread = C.int32_t(threads)
	qp.ftype = ft
	qp.pure = C.bool(p.Pure)
	cin, cout := C.CString(in), C.CString(tmp)
	defer C.free(unsafe.Pointer(cin))
	defer C.free(unsafe.Pointer(cout))
	if rc := C.llama_model_quantize(cin, cout, &qp); rc != 0 {
		os.Remove(tmp)
		return fmt.Errorf("llama.cpp could not quantize %s to %s (status %d); run with -v for its log", in, p.Type, int(rc))
	}
	// CreateTemp made it 0600; a model file is as readable as any other
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// checkPureRows checks that every matrix llama.cpp quantizes with pure set
// has rows that are whole blocks of the type: llama.cpp's quantizer aborts
// on one that is not (without pure it falls back to another type).
func checkPureRows(f *models.File, typ string) error {
	name := strings.TrimSuffix(strings.TrimSuffix(typ, "_S"), "_M")
	t, err := models.ParseGGMLType(name)
	if err != nil || t.BlockSize() <= 1 {
		return nil
	}
	for _, ti := range f.Tensors {
		if len(ti.Dims) < 2 || !strings.HasSuffix(ti.Name, "weight") || strings.HasSuffix(ti.Name, "_norm.weight") || ti.Name == "position_embd.weight" {
			continue
		}
		if ti.Dims[0]%uint64(t.BlockSize()) != 0 {
			return fmt.Errorf("%s with pure set needs every matrix row to be a multiple of %d values (one %s block), but %s has rows of %d: leave pure off (llama.cpp then gives such matrices another type) or use widths that are multiples of %d",
				typ, t.BlockSize(), name, ti.Name, ti.Dims[0], t.BlockSize())
		}
	}
	return nil
}
