package llamacpp

/*
#include <stdlib.h>
#include "llama.h"
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/lldiff/lldiff/internal/safetext"
	"github.com/lldiff/lldiff/models"
)

// TokenizeOptions configure Tokenize (see models.TokenizeOptions).
type TokenizeOptions = models.TokenizeOptions

// BOSMode says whether to add a BOS token.
type BOSMode = models.BOSMode

// BOS modes.
const (
	BOSAuto = models.BOSAuto
	BOSYes  = models.BOSYes
	BOSNo   = models.BOSNo
)

// AddBOS reports whether the model adds a BOS token by default.
func (m *Model) AddBOS() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.c == nil {
		return false
	}
	return bool(C.llama_vocab_get_add_bos(m.vocab))
}

// BOS returns the BOS token id, or -1 when the vocabulary has none.
func (m *Model) BOS() int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.c == nil {
		return -1
	}
	return int32(C.llama_vocab_bos(m.vocab))
}

// EOS returns the end-of-sequence token id, or -1.
func (m *Model) EOS() int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.c == nil {
		return -1
	}
	return int32(C.llama_vocab_eos(m.vocab))
}

// Tokenize converts text to token ids. BOSYes adds the BOS token even
// where the vocabulary says not to (GPT-2, GPT-NeoX): llama.cpp itself adds
// one only where the vocabulary asks for it, so lldiff puts it in front.
func (m *Model) Tokenize(text string, o TokenizeOptions) ([]int32, error) {
	if HasImageMarker(text) {
		if v := visionOf(m); v != nil {
			return v.tokenize(text, o) // mtmd.go
		}
		return nil, fmt.Errorf("the prompt holds an <image:PATH> marker but no projector is loaded: pass the model's mmproj file with --mmproj")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.c == nil {
		return nil, errClosed
	}
	vocabBOS := bool(C.llama_vocab_get_add_bos(m.vocab))
	addBOS := vocabBOS
	switch o.BOS {
	case BOSYes:
		addBOS = true
	case BOSNo:
		addBOS = false
	}
	bos := int32(C.llama_vocab_bos(m.vocab))
	if addBOS && bos < 0 {
		return nil, fmt.Errorf("this model's vocabulary has no BOS token; tokenize without BOS")
	}
	if ch, ok := m.gaps.Unspellable(text); ok {
		return nil, fmt.Errorf("%s has no token for %q and no byte tokens to spell it with, so llama.cpp cannot tokenize the text (it would abort): leave that character out", m.Path, ch)
	}
	// llama.cpp's add_special adds BOS (and EOS where the vocabulary asks
	// for one) only as the vocabulary says: it is passed when the
	// vocabulary adds BOS itself, and otherwise BOS is prepended here
	special := addBOS && vocabBOS
	prepend := addBOS && !vocabBOS
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	n := len(text) + 2
	for {
		buf := make([]C.llama_token, n)
		got := C.llama_tokenize(m.vocab, ctext, C.int32_t(len(text)), &buf[0], C.int32_t(n), C.bool(special), C.bool(o.ParseSpecial))
		if got == C.INT32_MIN {
			return nil, fmt.Errorf("text is too long to tokenize (%d bytes)", len(text))
		}
		if got < 0 {
			n = int(-got)
			continue
		}
		out := make([]int32, 0, int(got)+1)
		if prepend {
			out = append(out, bos)
		}
		for i := range int(got) {
			out = append(out, int32(buf[i]))
		}
		return out, nil
	}
}

// Piece returns the bytes token id stands for in decoded text (a
// SentencePiece "▁" becomes a space; byte tokens become their byte; control
// tokens such as <s> their text).
func (m *Model) Piece(id int32) []byte {
	if id < 0 {
		return nil // an image position (mtmd.go)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.c == nil || id < 0 || int(id) >= m.nVocab {
		return nil
	}
	buf := make([]byte, 64)
	for {
		n := C.llama_token_to_piece(m.vocab, C.llama_token(id), (*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(len(buf)), 0, true)
		if n < 0 {
			buf = make([]byte, int(-n))
			continue
		}
		return append([]byte(nil), buf[:n]...)
	}
}

// Text returns the token's entry in the vocabulary as stored ("▁happy",
// "<0x0A>", "Ġhappy" for GPT-2 byte-level BPE).
func (m *Model) Text(id int32) string {
	if r, ok := m.ImageRow(id); ok {
		return imagePrintable(r)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.c == nil || id < 0 || int(id) >= m.nVocab {
		return ""
	}
	return C.GoString(C.llama_vocab_get_text(m.vocab, C.llama_token(id)))
}

// TokenKind classifies a token (see models.TokenKind).
type TokenKind = models.TokenKind

// Token kinds.
const (
	KindNormal  = models.KindNormal
	KindControl = models.KindControl
	KindByte    = models.KindByte
	KindUnknown = models.KindUnknown
	KindUser    = models.KindUser
	KindUnused  = models.KindUnused
)

// Kind returns the token's kind.
func (m *Model) Kind(id int32) TokenKind {
	if _, ok := m.ImageRow(id); ok {
		return models.KindImage
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.c == nil || id < 0 || int(id) >= m.nVocab {
		return KindUnknown
	}
	a := C.llama_vocab_get_attr(m.vocab, C.llama_token(id))
	switch {
	case a&C.LLAMA_TOKEN_ATTR_CONTROL != 0:
		return KindControl
	case a&C.LLAMA_TOKEN_ATTR_BYTE != 0:
		return KindByte
	case a&C.LLAMA_TOKEN_ATTR_UNKNOWN != 0:
		return KindUnknown
	case a&C.LLAMA_TOKEN_ATTR_USER_DEFINED != 0:
		return KindUser
	case a&C.LLAMA_TOKEN_ATTR_UNUSED != 0:
		return KindUnused
	}
	return KindNormal
}

// Printable returns a one-line form of a token that hides nothing: spaces
// are shown as "▁" (for every tokenizer, so " happy" reads "▁happy"), a lone
// space token as "▁", newlines and tabs as \n and \t, byte tokens and bytes
// that are not valid UTF-8 as <0xNN>, control and unused tokens as their
// text (<s>, <unused0>), escaped (safetext.Terminal): the text is the
// vocabulary file's.
func (m *Model) Printable(id int32) string {
	if r, ok := m.ImageRow(id); ok {
		return imagePrintable(r)
	}
	switch m.Kind(id) {
	case KindControl, KindByte, KindUnused:
		t := m.Text(id)
		if t != "" {
			return safetext.Terminal(t)
		}
	}
	return PrintableBytes(m.Piece(id))
}

// PrintableBytes renders decoded token bytes the way Printable does (see
// models.PrintableBytes).
func PrintableBytes(b []byte) string { return models.PrintableBytes(b) }
