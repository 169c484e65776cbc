package llamacpp

import (
	"github.com/lldiff/lldiff/internal/testexec"

	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lldiff/lldiff/internal/testmodels"
	"github.com/lldiff/lldiff/models"
)

// Environment of the child process of TestLoaderNoSignals.
const (
	loaderListEnv  = "LLDIFF_LOADER_LIST"  // the file listing the GGUF files to load
	loaderStartEnv = "LLDIFF_LOADER_START" // the first line to load
)

// loaderText is tokenized by every loaded model: spaces, punctuation, a
// newline, and characters that SentencePiece vocabularies spell with byte
// tokens.
const loaderText = "Once upon a time, café 日本\n"

// TestLoaderChild is the child process of TestLoaderNoSignals: it loads
// each file of the list in $LLDIFF_LOADER_LIST with LoadModel (which
// validates it first), tokenizes loaderText, looks at the tokens, and for
// a model with weights decodes them. It prints "begin N" before file N and
// "end N status" after it, so that the parent knows which file killed it.
func TestLoaderChild(t *testing.T) {
	list := os.Getenv(loaderListEnv)
	if list == "" {
		t.Skip("the child process of TestLoaderNoSignals")
	}
	start, _ := strconv.Atoi(os.Getenv(loaderStartEnv))
	data, err := os.ReadFile(list)
	if err != nil {
		t.Fatal(err)
	}
	out := bufio.NewWriter(os.Stdout)
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if i < start {
			continue
		}
		path, vocabOnly, _ := strings.Cut(line, "\t")
		fmt.Fprintf(out, "begin %d\n", i)
		out.Flush()
		status := loadTokenizeDecode(path, vocabOnly == "vocab")
		fmt.Fprintf(out, "end %d %s\n", i, strings.ReplaceAll(status, "\n", " "))
		out.Flush()
	}
}

// loadTokenizeDecode runs what every lldiff command does with a model and
// says how it went: "ok", or the first step that returned an error.
func loadTokenizeDecode(path string, vocabOnly bool) string {
	m, err := LoadModel(path, ModelParams{VocabOnly: vocabOnly})
	if err != nil {
		var fe *models.FormatError
		if errors.As(err, &fe) {
			return "refused " + err.Error()
		}
		if in, _ := models.Open(path); vocabOnly && in != nil && !slices.Contains(models.SupportedArchitectures, in.Architecture()) {
			return "vocab-load-error " + err.Error()
		}
		return "load-error " + err.Error()
	}
	defer m.Close()
	toks, err := m.Tokenize(loaderText, TokenizeOptions{})
	status := "ok"
	if err != nil {
		status = "tokenize-refused " + err.Error()
		if toks, err = m.Tokenize("Once upon a time", TokenizeOptions{BOS: BOSNo}); err != nil || len(toks) == 0 {
			toks = []int32{0}
		}
	}
	for _, id := range append(slices.Clone(toks), 0, int32(m.NVocab()/2), int32(m.NVocab()-1)) {
		m.Printable(id)
	}
	if vocabOnly {
		return status
	}
	c, err := m.NewContext(ContextParams{NCtx: 64, Threads: 1})
	if err != nil {
		return "context-error " + err.Error()
	}
	defer c.Close()
	caches, err := c.Run([][]int32{toks[:min(len(toks), 32)]}, RunOptions{})
	if err != nil {
		return "decode-error " + err.Error()
	}
	lg, ok := caches[0].At(models.Hook{Kind: models.Logits, Layer: -1})
	if !ok {
		return "decode-error no logits"
	}
	for r := range lg.Rows() {
		for _, v := range lg.Row(r) {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Sprintf("nan logits (row %d)", r)
			}
		}
	}
	return status
}

// loaderCase is one file of the corpus.
type loaderCase struct {
	name      string
	path      string
	vocabOnly bool
}

// TestLoaderNoSignals writes a corpus of damaged GGUF files (each kind of
// metadata llama.cpp's loader trusts, and random changes to the metadata
// and to the header bytes of the shared models and vocabularies; seeded,
// so the corpus is the same every run), keeps the ones lldiff's validation
// accepts, and loads, tokenizes and decodes each in a child process
// (TestLoaderChild). No child may die of a signal or an abort, and no
// accepted file may fail in llama.cpp or give NaN logits: the validation
// must refuse all of those first.
func TestLoaderNoSignals(t *testing.T) {
	if testing.Short() {
		t.Skip("loads a few hundred files in child processes (-short)")
	}
	t0 := time.Now()
	dir := t.TempDir()
	g := &corpus{dir: dir, r: rand.New(rand.NewPCG(14, 1))}
	// The small models get the most random changes; the large BPE
	// vocabularies (50,000 tokens and merges: a tenth of a second to load)
	// fewer. The synthetic gpt2 and gptneox models carry those
	// vocabularies too, and get the hyperparameter classes only.
	for _, b := range []struct {
		name      string
		vocabOnly bool
		random    int
	}{
		{testmodels.Stories260K, false, 50},
		{testmodels.TinyStories656KQ8, false, 50},
		{testmodels.VocabLlamaSPM, true, 12},
		{testmodels.VocabGPT2, true, 8},
		{testmodels.VocabGPTNeoX, true, 4},
	} {
		g.addBase(t, b.name, testmodels.Path(t, b.name), b.vocabOnly, true, b.random)
	}
	for _, arch := range []string{"gpt2", "gptneox"} {
		p := filepath.Join(dir, "synthetic-"+arch+".gguf")
		spec := models.SynthSpec{Arch: arch, NLayer: 2, DModel: 32, NHead: 2, DFF: 64, NCtx: 64, Type: models.Q8_0, Seed: 1,
			VocabPath: testmodels.Path(t, models.SynthVocab(arch))}
		if err := models.WriteSynthetic(p, spec); err != nil {
			t.Fatal(err)
		}
		g.addBase(t, "synthetic-"+arch, p, false, false, 4)
	}
	t.Logf("corpus: %d files, %d accepted by the validation, %d refused (%v)", g.n, len(g.accepted), g.n-len(g.accepted), time.Since(t0))
	if len(g.accepted) < 50 {
		t.Fatalf("only %d files accepted: the corpus tests little", len(g.accepted))
	}

	res := runChildren(t, dir, g.accepted)
	counts := map[string]int{}
	for i, r := range res {
		kind, _, _ := strings.Cut(r, " ")
		counts[kind]++
		switch kind {
		case "ok", "tokenize-refused":
		case "vocab-load-error":
			// the vocabulary of an architecture llama.cpp may not know
		case "signal", "hang":
			t.Errorf("%s: llama.cpp died: %s", g.accepted[i].name, r)
		default:
			t.Errorf("%s: the validation accepts it, but %s", g.accepted[i].name, r)
		}
	}
	t.Logf("results of the %d accepted files: %v", len(res), counts)
	if counts["ok"] == 0 {
		t.Error("no file loaded: the children did not run")
	}
}

// corpus generates the damaged files.
type corpus struct {
	dir      string
	r        *rand.Rand
	n        int
	accepted []loaderCase
}

// addBase adds the mutations of the file at path: the classes (of the
// vocabulary with vocabClasses, of the hyperparameters for a model), and
// random metadata changes and random header bit flips, random of each.
func (g *corpus) addBase(t *testing.T, name, path string, vocabOnly, vocabClasses bool, random int) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := models.Parse(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if err := check(f, vocabOnly); err != nil {
		t.Fatalf("%s: the unchanged file is refused: %v", name, err)
	}
	data := make(map[string][]byte, len(f.Tensors))
	for _, ti := range f.Tensors {
		if data[ti.Name], err = f.ReadTensorAt(bytes.NewReader(raw), ti.Name); err != nil {
			t.Fatal(err)
		}
	}
	write := func(what string, kvs []KV) {
		var w models.Writer
		for _, kv := range kvs {
			if err := w.AddKV(kv.Key, kv.Value); err != nil {
				g.n++ // no GGUF writer writes it (an alignment not a power of two)
				return
			}
		}
		for _, ti := range f.Tensors {
			if err := w.AddTensor(ti.Name, ti.Type, ti.Dims, data[ti.Name]); err != nil {
				t.Fatal(err)
			}
		}
		if w.Size() > 4*int64(len(raw))+1<<20 {
			g.n++ // general.alignment of 2^31 pads each tensor to 2 GB
			return
		}
		var buf bytes.Buffer
		if _, err := w.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		g.add(t, name+" "+what, buf.Bytes(), vocabOnly)
	}
	g.add(t, name+" unchanged", raw, vocabOnly)
	for _, m := range classMutations(f, vocabOnly, vocabClasses) {
		write(m.what, m.edit(slices.Clone(f.KVs)))
	}
	for i := range random {
		kvs, what := g.randomKVs(f)
		write(fmt.Sprintf("random %d: %s", i, what), kvs)
	}
	// bit flips in the header (metadata and tensor table), not in the
	// weights, whose values the validation does not judge
	for i := range random {
		b := slices.Clone(raw)
		var flips []string
		for range 1 + g.r.IntN(3) {
			off := 8 + g.r.IntN(int(f.DataOffset)-8)
			bit := g.r.IntN(8)
			b[off] ^= 1 << bit
			flips = append(flips, fmt.Sprintf("%d.%d", off, bit))
		}
		g.add(t, fmt.Sprintf("%s bit flips %d at %s", name, i, strings.Join(flips, ",")), b, vocabOnly)
	}
}

// KV is models.KV.
type KV = models.KV

// add validates a file of the corpus and, when the validation accepts it,
// writes it for the children.
func (g *corpus) add(t *testing.T, name string, b []byte, vocabOnly bool) {
	t.Helper()
	g.n++
	f, err := models.Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil || check(f, vocabOnly) != nil {
		return
	}
	p := filepath.Join(g.dir, fmt.Sprintf("%04d.gguf", g.n))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	g.accepted = append(g.accepted, loaderCase{name: name, path: p, vocabOnly: vocabOnly})
}

// check is the validation LoadModel runs.
func check(f *models.File, vocabOnly bool) error {
	if _, err := f.Info(); err != nil {
		return err
	}
	if vocabOnly {
		return f.CheckVocab()
	}
	return f.CheckRunnable()
}

type mutation struct {
	what string
	edit func(kvs []KV) []KV
}

func setKV(kvs []KV, key string, v any) []KV {
	for i := range kvs {
		if kvs[i].Key == key {
			kvs[i].Value = v
			return kvs
		}
	}
	return append(kvs, KV{Key: key, Value: v})
}

func deleteKV(kvs []KV, key string) []KV {
	return slices.DeleteFunc(kvs, func(kv KV) bool { return kv.Key == key })
}

func getKV(kvs []KV, key string) any {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value
		}
	}
	return nil
}

// editTokens changes a copy of the token list.
func editTokens(kvs []KV, edit func(toks []string) []string) []KV {
	toks, _ := getKV(kvs, "tokenizer.ggml.tokens").([]string)
	return setKV(kvs, "tokenizer.ggml.tokens", edit(slices.Clone(toks)))
}

// classMutations are the kinds of damage of issue 14, and the others
// llama.cpp's loader asserts on, applied to f: those of the vocabulary
// with vocab, those of the hyperparameters unless vocabOnly.
func classMutations(f *models.File, vocabOnly, vocab bool) []mutation {
	toks, _ := f.Strings("tokenizer.ggml.tokens")
	n := len(toks)
	nan := float32(math.NaN())
	ms := []mutation{
		{"duplicate token", func(kvs []KV) []KV { return editTokens(kvs, func(s []string) []string { s[n-1] = s[n-2]; return s }) }},
		{"flipped bit makes a duplicate", func(kvs []KV) []KV {
			return editTokens(kvs, func(s []string) []string {
				if i := slices.Index(s, "<0x41>"); i >= 0 {
					s[i] = "<0x43>"
				} else {
					s[n/2] = s[n/2+1]
				}
				return s
			})
		}},
		{"empty token named like another", func(kvs []KV) []KV {
			return editTokens(kvs, func(s []string) []string { s[n-3], s[n-2] = "", fmt.Sprintf("[EMPTY_%d]", n-3); return s })
		}},
		{"empty token", func(kvs []KV) []KV { return editTokens(kvs, func(s []string) []string { s[n-3] = ""; return s }) }},
		{"empty tokens", func(kvs []KV) []KV { return editTokens(kvs, func([]string) []string { return []string{} }) }},
		{"no tokens", func(kvs []KV) []KV { return deleteKV(kvs, "tokenizer.ggml.tokens") }},
		{"one token", func(kvs []KV) []KV {
			kvs = editTokens(kvs, func(s []string) []string { return s[:1] })
			return deleteKV(deleteKV(kvs, "tokenizer.ggml.scores"), "tokenizer.ggml.token_type")
		}},
		{"short scores", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.scores", make([]float32, n/2)) }},
		{"int32 scores", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.scores", make([]int32, n)) }},
		{"uint8 scores", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.scores", make([]uint8, n)) }},
		{"string scores", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.scores", make([]string, n)) }},
		{"scalar scores", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.scores", float32(1)) }},
		{"NaN scores", func(kvs []KV) []KV {
			s := make([]float32, n)
			for i := range s {
				s[i] = nan
			}
			return setKV(kvs, "tokenizer.ggml.scores", s)
		}},
		{"short token_type", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.token_type", make([]int32, n/2)) }},
		{"uint8 token_type", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.token_type", make([]uint8, n)) }},
		{"token_type 9", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.token_type", fill(n, int32(9))) }},
		{"all byte tokens", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.token_type", fill(n, int32(6))) }},
		{"all control tokens", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.token_type", fill(n, int32(3))) }},
		{"no byte tokens", func(kvs []KV) []KV {
			return editTokens(kvs, func(s []string) []string {
				for i, t := range s {
					if strings.HasPrefix(t, "<0x") {
						s[i] = "<1x" + t[3:]
					}
				}
				return s
			})
		}},
		{"merges removed", func(kvs []KV) []KV { return deleteKV(kvs, "tokenizer.ggml.merges") }},
		{"int32 merges", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.merges", []int32{1, 2}) }},
		{"scalar merges", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.merges", "a b") }},
		{"empty merges", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.merges", []string{}) }},
		{"bos out of range", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.bos_token_id", uint32(n)) }},
		{"eos far out of range", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.eos_token_id", uint32(1<<31)) }},
		{"int32 bos", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.bos_token_id", int32(1)) }},
		{"unknown id out of range", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.unknown_token_id", uint32(n+5)) }},
		{"padding id", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.padding_token_id", uint32(n-1)) }},
		{"small vocabulary, default ids", func(kvs []KV) []KV {
			kvs = editTokens(kvs, func(s []string) []string { return s[:2] })
			kvs = deleteKV(deleteKV(kvs, "tokenizer.ggml.scores"), "tokenizer.ggml.token_type")
			return deleteKV(deleteKV(kvs, "tokenizer.ggml.bos_token_id"), "tokenizer.ggml.eos_token_id")
		}},
		{"glm pre-tokenizer", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.pre", "chatglm-bpe") }},
		{"roberta pre-tokenizer", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.pre", "roberta-bpe") }},
		{"unknown pre-tokenizer", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.pre", "nonesuch") }},
		{"add_sep_token", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.add_sep_token", true) }},
		{"add_eos_token", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.add_eos_token", true) }},
		{"no add_bos_token", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.add_bos_token", false) }},
		{"string add_bos_token", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.add_bos_token", "yes") }},
		{"no space prefix", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.add_space_prefix", false) }},
		{"Phi-3 name", func(kvs []KV) []KV { return setKV(kvs, "general.name", "Phi-3-mini") }},
		{"jina pre with mask", func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.pre", "jina-v2-de") }},
	}
	for _, tok := range []string{"llama", "gpt2", "bert", "t5", "rwkv", "plamo2", "none", "no_vocab", "", "llamq"} {
		ms = append(ms, mutation{"tokenizer " + tok, func(kvs []KV) []KV { return setKV(kvs, "tokenizer.ggml.model", tok) }})
	}
	if !vocab {
		ms = nil
	}
	if vocabOnly {
		return ms
	}
	a := f.Architecture() + "."
	eps := a + "attention.layer_norm_rms_epsilon"
	if f.Architecture() != "llama" {
		eps = a + "attention.layer_norm_epsilon"
	}
	for _, fl := range []struct {
		key string
		vs  []float32
	}{
		{eps, []float32{nan, -1e-5, 0, float32(math.Inf(1)), 1e30}},
		{a + "rope.freq_base", []float32{nan, 0, -10000, float32(math.Inf(1)), 1e-40, 1}},
		{a + "rope.scaling.factor", []float32{nan, -2, 1e-40, 4}},
		{a + "rope.scale_linear", []float32{-1, 0.5}},
		{a + "rope.scaling.attn_factor", []float32{0, nan, -1}},
	} {
		for _, v := range fl.vs {
			ms = append(ms, mutation{fmt.Sprintf("%s %v", fl.key, v), func(kvs []KV) []KV { return setKV(kvs, fl.key, v) }})
		}
	}
	nl, _ := f.Uint(a + "block_count")
	ms = append(ms,
		mutation{"rope scaling bogus", func(kvs []KV) []KV { return setKV(kvs, a+"rope.scaling.type", "bogus") }},
		mutation{"rope scaling yarn", func(kvs []KV) []KV { return setKV(kvs, a+"rope.scaling.type", "yarn") }},
		mutation{"rope scaling yarn, base 1", func(kvs []KV) []KV {
			return setKV(setKV(kvs, a+"rope.scaling.type", "yarn"), a+"rope.freq_base", float32(1))
		}},
		mutation{"rope scaling longrope", func(kvs []KV) []KV { return setKV(kvs, a+"rope.scaling.type", "longrope") }},
		mutation{"experts", func(kvs []KV) []KV { return setKV(kvs, a+"expert_count", uint32(8)) }},
		mutation{"experts used", func(kvs []KV) []KV { return setKV(kvs, a+"expert_used_count", uint32(2)) }},
		mutation{"too many experts", func(kvs []KV) []KV {
			return setKV(setKV(kvs, a+"expert_count", uint32(1000)), a+"expert_used_count", uint32(2))
		}},
		mutation{"key_length doubled", func(kvs []KV) []KV {
			d, _ := f.Uint(a + "embedding_length")
			h, _ := f.Uint(a + "attention.head_count")
			return setKV(kvs, a+"attention.key_length", uint32(2*d/h))
		}},
		mutation{"value_length halved", func(kvs []KV) []KV {
			d, _ := f.Uint(a + "embedding_length")
			h, _ := f.Uint(a + "attention.head_count")
			return setKV(kvs, a+"attention.value_length", uint32(d/h/2))
		}},
		mutation{"rope dims 4", func(kvs []KV) []KV { return setKV(kvs, a+"rope.dimension_count", uint32(4)) }},
		mutation{"context 0", func(kvs []KV) []KV { return setKV(kvs, a+"context_length", uint32(0)) }},
		mutation{"context 1", func(kvs []KV) []KV { return setKV(kvs, a+"context_length", uint32(1)) }},
		mutation{"block_count 600", func(kvs []KV) []KV { return setKV(kvs, a+"block_count", uint32(600)) }},
		mutation{"block_count 0", func(kvs []KV) []KV { return setKV(kvs, a+"block_count", uint32(0)) }},
		mutation{"short per-layer heads", func(kvs []KV) []KV { return setKV(kvs, a+"attention.head_count", fill(int(nl)-1, uint32(2))) }},
		mutation{"long per-layer ff", func(kvs []KV) []KV { return setKV(kvs, a+"feed_forward_length", fill(int(nl)+1, uint32(64))) }},
		mutation{"float per-layer ff", func(kvs []KV) []KV { return setKV(kvs, a+"feed_forward_length", fill(int(nl), float32(64))) }},
		mutation{"kv heads 3", func(kvs []KV) []KV { return setKV(kvs, a+"attention.head_count_kv", uint32(3)) }},
		mutation{"kv heads 0", func(kvs []KV) []KV { return setKV(kvs, a+"attention.head_count_kv", uint32(0)) }},
		mutation{"heads 0", func(kvs []KV) []KV { return setKV(kvs, a+"attention.head_count", uint32(0)) }},
		mutation{"rope finetuned uint32", func(kvs []KV) []KV { return setKV(kvs, a+"rope.scaling.finetuned", uint32(1)) }},
		mutation{"no alignment key, 64", func(kvs []KV) []KV { return setKV(kvs, "general.alignment", uint32(64)) }},
	)
	return ms
}

func fill[T any](n int, v T) []T {
	out := make([]T, max(n, 0))
	for i := range out {
		out[i] = v
	}
	return out
}

// randomKVs changes one to three metadata values of f at random: a bit of
// a string or of a string array's element, a float to a special value, an
// array's length or element type, a value's type.
func (g *corpus) randomKVs(f *models.File) ([]KV, string) {
	kvs := slices.Clone(f.KVs)
	r := g.r
	var what []string
	for range 1 + r.IntN(3) {
		i := r.IntN(len(kvs))
		kv := &kvs[i]
		switch v := kv.Value.(type) {
		case []string:
			if len(v) == 0 {
				continue
			}
			s := slices.Clone(v)
			j := r.IntN(len(s))
			if b := []byte(s[j]); len(b) > 0 && r.IntN(3) > 0 {
				b[r.IntN(len(b))] ^= 1 << r.IntN(8)
				s[j] = string(b)
			} else {
				s[j] = s[r.IntN(len(s))]
			}
			kv.Value = s
			what = append(what, fmt.Sprintf("%s[%d]=%q", kv.Key, j, s[j]))
			continue
		case string:
			if b := []byte(v); len(b) > 0 {
				b[r.IntN(len(b))] ^= 1 << r.IntN(8)
				kv.Value = string(b)
				what = append(what, fmt.Sprintf("%s=%q", kv.Key, kv.Value))
				continue
			}
		case float32:
			specials := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 0, -1, math.SmallestNonzeroFloat32, math.MaxFloat32}
			kv.Value = specials[r.IntN(len(specials))]
			what = append(what, fmt.Sprintf("%s=%v", kv.Key, kv.Value))
			continue
		case uint32:
			vals := []uint32{0, 1, v + 1, v - 1, v * 2, 1 << 31, math.MaxUint32}
			kv.Value = vals[r.IntN(len(vals))]
			what = append(what, fmt.Sprintf("%s=%v", kv.Key, kv.Value))
			continue
		}
		if rv := reflect.ValueOf(kv.Value); rv.Kind() == reflect.Slice && r.IntN(2) == 0 {
			n := r.IntN(rv.Len() + 2)
			out := reflect.MakeSlice(rv.Type(), n, n)
			reflect.Copy(out, rv)
			kv.Value = out.Interface()
			what = append(what, fmt.Sprintf("%s has %d of %d elements", kv.Key, n, rv.Len()))
			continue
		}
		others := []any{int32(-1), uint32(7), float32(1), "x", true, []int32{1}, []float32{1}, uint64(3)}
		kv.Value = others[r.IntN(len(others))]
		what = append(what, fmt.Sprintf("%s=%T(%v)", kv.Key, kv.Value, kv.Value))
	}
	return kvs, strings.Join(what, ", ")
}

// runChildren loads the files in child processes and returns each one's
// status: a child's "end" status, "signal ..." for a file that killed its
// child, "hang" for one that stopped it for 30 s. A child that dies is
// replaced by one that starts after the file that killed it.
func runChildren(t *testing.T, dir string, cases []loaderCase) []string {
	var list strings.Builder
	for _, c := range cases {
		kind := "model"
		if c.vocabOnly {
			kind = "vocab"
		}
		fmt.Fprintf(&list, "%s\t%s\n", c.path, kind)
	}
	listPath := filepath.Join(dir, "list.txt")
	if err := os.WriteFile(listPath, []byte(list.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	res := make([]string, len(cases))
	for start := 0; start < len(cases); {
		cmd := testexec.Self("-test.run=^TestLoaderChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), loaderListEnv+"="+listPath, loaderStartEnv+"="+strconv.Itoa(start),
			"GGML_NO_BACKTRACE=1") // ggml would start gdb on an abort
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string)
		go func() {
			sc := bufio.NewScanner(stdout)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		current, hung := -1, false
	read:
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					break read
				}
				var i int
				if _, err := fmt.Sscanf(line, "begin %d", &i); err == nil {
					current = i
				} else if _, err := fmt.Sscanf(line, "end %d", &i); err == nil && i < len(res) {
					_, res[i], _ = strings.Cut(line[len("end "):], " ")
					current = -1
					start = i + 1
				}
			case <-time.After(30 * time.Second):
				hung = true
				cmd.Process.Kill()
				for range lines {
				}
				break read
			}
		}
		err = cmd.Wait()
		if current < 0 {
			if start < len(cases) {
				t.Fatalf("child stopped before file %d without saying why: %v\n%s", start, err, tail(stderr.String()))
			}
			break
		}
		if hung {
			res[current] = "hang"
		} else {
			res[current] = fmt.Sprintf("signal (%v): %s", err, tail(stderr.String()))
		}
		start = current + 1
	}
	return res
}

// tail returns the end of a child's output, on one line.
func tail(s string) string {
	if len(s) > 300 {
		s = s[len(s)-300:]
	}
	return strings.Join(strings.Fields(s), " ")
}
