// Package lldiff is the root of the lldiff module. The command is in
// cmd/lldiff and the library in the packages below; this package only
// carries the tokenizer vocabularies that ship in testdata/models/vocab, so
// that `lldiff synth` can build a model with a real vocabulary anywhere,
// offline, without the checkout beside the binary.
package lldiff

import "embed"

// Vocab holds testdata/models/vocab/*.gguf (the Llama-2 SentencePiece,
// GPT-2 and GPT-NeoX tokenizers; see testdata/models/MANIFEST.md).
//
//go:embed testdata/models/vocab/*.gguf
var Vocab embed.FS

// VocabFile returns the bytes of a shipped vocabulary by its name relative
// to testdata/models, such as "vocab/ggml-vocab-llama-spm.gguf".
func VocabFile(name string) ([]byte, error) {
	return Vocab.ReadFile("testdata/models/" + name)
}
