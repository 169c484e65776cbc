package llamacpp

/*
#include <stdlib.h>
#include "llama.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"github.com/lldiff/lldiff/models"
)

// ModelParams configure LoadModel.
type ModelParams struct {
	// GPULayers is the number of layers to put on the GPU (llama.cpp's -ngl);
	// 0 keeps everything on the CPU, a large number offloads all.
	GPULayers int
	// NoMmap reads the file into memory instead of mapping it.
	NoMmap bool
	// Mmap maps the file even where LoadModel would read it (see
	// Repacked): the mapped pages then stay resident beside the repacked
	// copy, about twice the file in memory.
	Mmap bool
	// NoRepack keeps ggml's CPU weights as stored instead of repacking
	// Q4_0, Q4_K, Q2_K and IQ4_NL matrices into its interleaved layout
	// (llama.cpp's use_extra_bufts): prompt decoding is then up to 1.3×
	// slower, and the file can stay mapped and shared between processes.
	NoRepack bool
	// VocabOnly loads only the tokenizer (vocab-only GGUFs have no weights).
	VocabOnly bool
}

// Model is a loaded GGUF model. Its methods are safe for concurrent use;
// Close must not race with contexts still in use.
type Model struct {
	mu    sync.Mutex
	c     *C.struct_llama_model
	vocab *C.struct_llama_vocab

	// Path is the file the model was loaded from.
	Path string
	// File is the GGUF header, read and validated in Go before llama.cpp saw
	// the file.
	File *models.File
	// Info holds the hyperparameters.
	Info *models.Info
	// Hooks maps hook names to graph nodes; nil for vocab-only models.
	Hooks *models.HookTable

	nVocab    int
	gpuLayers int
	// gaps are the characters a SentencePiece vocabulary without all byte
	// tokens cannot spell (nil when it can spell any text): llama.cpp
	// aborts on them, so Tokenize refuses them first.
	gaps *models.SPMGaps

	repacked, mapped bool

	// lenses are the logit lenses handed out by NewUnembedderWith, one per
	// options, kept for the next caller until Close (lens.go). lensMu is
	// taken before mu.
	lensMu sync.Mutex
	lenses map[UnembedOptions]*lensCore
}

// Repacked reports whether ggml repacks this model's CPU matrices into its
// interleaved layout (ModelParams.NoRepack); Mapped whether the file is
// memory-mapped. A repacked model is read, not mapped, unless
// ModelParams.Mmap asks for it.
func (m *Model) Repacked() bool { return m.repacked }

// Mapped reports whether llama.cpp maps the model file (see Repacked).
func (m *Model) Mapped() bool { return m.mapped }

// repackable reports whether ggml's CPU backend would repack some matrix
// of f: a weight of type Q4_0, Q4_K, Q2_K or IQ4_NL other than the token
// embedding (which is only gathered from, never multiplied).
func repackable(f *models.File) bool {
	for _, t := range f.Tensors {
		switch t.Type {
		case models.Q4_0, models.Q4_K, models.Q2_K, models.IQ4_NL:
			if t.Name != "token_embd.weight" && len(t.Dims) == 2 {
				return true
			}
		}
	}
	return false
}

// LoadModel validates a GGUF file in Go and loads it with llama.cpp. The
// validation is CheckRunnable, or CheckVocab when p.VocabOnly: llama.cpp
// asserts, aborts or reads out of bounds on files these refuse.
func LoadModel(path string, p ModelParams) (*Model, error) {
	Init()
	f, err := models.Open(path)
	if err != nil {
		return nil, err
	}
	info, err := f.Info()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m := &Model{Path: path, File: f, Info: info, gpuLayers: p.GPULayers, gaps: f.SPMGaps()}
	if p.VocabOnly {
		if err := f.CheckVocab(); err != nil {
			return nil, err
		}
	} else {
		if err := f.CheckRunnable(); err != nil {
			return nil, err
		}
		if m.Hooks, err = models.HookTableOf(info); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	mp := C.llama_model_default_params()
	mp.n_gpu_layers = C.int32_t(p.GPULayers)
	m.repacked = !p.NoRepack && p.GPULayers == 0 && !p.VocabOnly && repackable(f)
	// A repacked matrix is a copy in ggml's own memory: mapped, the file's
	// pages would stay resident beside it (peak memory twice the file, as
	// llama.cpp's own mmap+repack build shows), so such a model is read,
	// not mapped, unless the caller asks for the mapping.
	m.mapped = !p.NoMmap && (!m.repacked || p.Mmap)
	mp.use_mmap = C.bool(m.mapped)
	mp.use_extra_bufts = C.bool(!p.NoRepack)
	mp.vocab_only = C.bool(p.VocabOnly)
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	m.c = C.llama_model_load_from_file(cpath, mp)
	if m.c == nil {
		if !slices.Contains(models.SupportedArchitectures, info.Arch) {
			// CheckVocab takes the vocabulary of any architecture
			return nil, fmt.Errorf("llama.cpp could not load the vocabulary of %s, whose architecture %q is not one lldiff runs (%s) and may be one llama.cpp does not know; run with -v to see llama.cpp's log",
				path, info.Arch, strings.Join(models.SupportedArchitectures, ", "))
		}
		return nil, fmt.Errorf("llama.cpp could not load %s although its header is valid; run with -v to see llama.cpp's log", path)
	}
	m.vocab = C.llama_model_get_vocab(m.c)
	m.nVocab = int(C.llama_vocab_n_tokens(m.vocab))
	if !p.VocabOnly {
		if n := int(C.llama_model_n_layer(m.c)); n != info.NLayer {
			m.Close()
			return nil, fmt.Errorf("%s: llama.cpp sees %d layers, the header says %d", path, n, info.NLayer)
		}
	}
	return m, nil
}

// Close frees the model. A second Close does nothing.
func (m *Model) Close() error {
	if v := visionOf(m); v != nil {
		v.Close() // mtmd keeps a pointer to the model (mtmd.go)
	}
	m.mu.Lock()
	if m.c != nil {
		C.llama_model_free(m.c)
		m.c = nil
		m.vocab = nil
	}
	m.mu.Unlock()
	// after m.c is nil, so that no lens is cached behind this
	m.closeLenses()
	return nil
}

var errClosed = errors.New("llamacpp: model is closed")

// GPULayers returns the number of layers offloaded to a GPU, as asked.
func (m *Model) GPULayers() int { return m.gpuLayers }

// NLayer returns the number of layers.
func (m *Model) NLayer() int { return m.Info.NLayer }

// NEmbd returns d_model.
func (m *Model) NEmbd() int { return m.Info.DModel }

// NVocab returns the vocabulary size.
func (m *Model) NVocab() int { return m.nVocab }

// Arch returns general.architecture.
func (m *Model) Arch() string { return m.Info.Arch }

// Desc returns llama.cpp's one-line description of the model.
func (m *Model) Desc() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.c == nil {
		return ""
	}
	buf := make([]byte, 256)
	n := C.llama_model_desc(m.c, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
	if n < 0 {
		return ""
	}
	return string(buf[:min(int(n), len(buf)-1)])
}

// SizeBytes returns the size of the model's weights.
func (m *Model) SizeBytes() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.c == nil {
		return 0
	}
	return uint64(C.llama_model_size(m.c))
}
