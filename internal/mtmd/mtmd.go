// Package mtmd compiles llama.cpp's multimodal library (tools/mtmd: mtmd.cpp,
// clip.cpp and the audio preprocessor) from the ollama module, so that
// `go build` alone links mtmd_* and clip_* into lldiff.
//
// The ollama module ships a Go package for tools/mtmd, but it cannot be
// imported from the module cache: it also compiles mtmd-helper.cpp, which
// includes stb_image.h and miniaudio.h from llama.cpp's vendor directory,
// and Go module zips leave every vendor directory out. The helper's image
// loading is replaced by Go's image decoders (llamacpp decodes the file and
// hands mtmd an RGB bitmap), and its decode loop by llamacpp's own, which
// asks for the outputs of every position.
//
// The sources are included through the llama.cpp include directory that the
// Makefile puts on CGO_CPPFLAGS (../tools/mtmd resolves against it); their
// own quoted includes resolve against their own directory. The projector
// graphs (tools/mtmd/models) come from the ollama package of that name,
// which needs nothing from vendor. llamacpp imports this package for its
// side effect.
package mtmd

// #cgo CXXFLAGS: -std=c++17
// #cgo CPPFLAGS: -DNDEBUG
import "C"

import (
	_ "github.com/ollama/ollama/llama/llama.cpp/src"               // llama_* used by mtmd.cpp
	_ "github.com/ollama/ollama/llama/llama.cpp/tools/mtmd/models" // the projector graphs clip.cpp builds
)
