package llamacpp

import (
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
)

// TestContextMemoryRefused: a context whose KV cache does not fit the
// available memory is refused before llama.cpp allocates and clears it
// (-c 2147483647 grew to 21 GB before anything failed); one that fits is
// created.
func TestContextMemoryRefused(t *testing.T) {
	m := loadShared(t, testmodels.Stories260K)
	// stories260K: 5 layers × 2 × 4 KV heads × 8 values × 4 bytes = 1280
	// bytes a token
	if got := KVBytes(m.Info, 1000, "f32"); got != 1280*1000 {
		t.Errorf("KVBytes = %v, want %v", got, 1280*1000)
	}
	if got := KVBytes(m.Info, 1000, "f16"); got != 640*1000 {
		t.Errorf("KVBytes f16 = %v, want %v", got, 640*1000)
	}
	memAvailable = func() (uint64, bool) { return 100 << 20, true } // 100 MiB
	defer func() { memAvailable = availableMemory }()
	_, err := m.NewContext(ContextParams{NCtx: 1 << 21, Threads: 1})
	if err == nil || !strings.Contains(err.Error(), "KV cache of 2.5 GiB") || !strings.Contains(err.Error(), "100.0 MiB") || !strings.Contains(err.Error(), "-c") {
		t.Fatalf("a 2.5 GiB KV cache with 100 MiB available: err = %v", err)
	}
	c, err := m.NewContext(ContextParams{NCtx: 256, Threads: 1})
	if err != nil {
		t.Fatalf("a 320 KiB KV cache: %v", err)
	}
	c.Close()
	// the real machine: 2^31 tokens need 2.5 TiB
	memAvailable = availableMemory
	if _, ok := availableMemory(); ok {
		if _, err := m.NewContext(ContextParams{NCtx: 1<<31 - 1, Threads: 1}); err == nil || !strings.Contains(err.Error(), "TiB") {
			t.Errorf("-c 2147483647: err = %v, want the KV cache's size", err)
		}
	}
}

// TestContextThreadsClamped: more threads than CPUs are clamped to the
// CPUs (-t 512 on 2 cores took minutes), in a context and in the logit
// lens.
func TestContextThreadsClamped(t *testing.T) {
	if n, clamped := ClampThreads(CPUs() + 1); n != CPUs() || !clamped {
		t.Errorf("ClampThreads(%d) = %d, %v", CPUs()+1, n, clamped)
	}
	if n, clamped := ClampThreads(1); n != 1 || clamped {
		t.Errorf("ClampThreads(1) = %d, %v", n, clamped)
	}
	m := loadShared(t, testmodels.Stories260K)
	c, err := m.NewContext(ContextParams{Threads: 512})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Params().Threads; got != min(512, CPUs()) {
		t.Errorf("-t 512 on %d CPUs runs %d threads", CPUs(), got)
	}
	// the logit lens too (it ran ggml with all 512)
	for _, n := range []int{512, 1} {
		u, err := m.NewUnembedderWith(UnembedOptions{Threads: n})
		if err != nil {
			t.Fatal(err)
		}
		if got := u.Threads(); got != min(n, CPUs()) {
			t.Errorf("a lens of %d threads on %d CPUs runs %d", n, CPUs(), got)
		}
		u.Close()
	}
}

// TestTokenizeBOSYes: --bos yes adds the BOS token for vocabularies that
// do not add one themselves (GPT-2, GPT-NeoX), where llama.cpp's
// add_special does nothing; --bos no and auto keep their meaning.
func TestTokenizeBOSYes(t *testing.T) {
	for _, tc := range []struct {
		vocab string
		bos   int32
	}{{testmodels.VocabGPT2, 50256}, {testmodels.VocabGPTNeoX, 0}, {testmodels.VocabLlamaSPM, 1}} {
		m, err := LoadModel(testmodels.Path(t, tc.vocab), ModelParams{VocabOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		auto, _ := m.Tokenize("Hello world", TokenizeOptions{})
		yes, err := m.Tokenize("Hello world", TokenizeOptions{BOS: models.BOSYes})
		if err != nil {
			t.Fatal(err)
		}
		no, _ := m.Tokenize("Hello world", TokenizeOptions{BOS: models.BOSNo})
		if yes[0] != tc.bos || len(yes) != len(no)+1 {
			t.Errorf("%s: --bos yes gives %v, want %d in front of %v", tc.vocab, yes, tc.bos, no)
		}
		if m.AddBOS() != (len(auto) == len(yes)) {
			t.Errorf("%s: auto gives %v (vocabulary adds BOS: %v)", tc.vocab, auto, m.AddBOS())
		}
	}
}
