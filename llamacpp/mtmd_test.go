package llamacpp

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/models"
)

// visionPair writes the smolvlm-tiny pair into a temporary directory and
// returns the language model's and the projector's paths.
func visionPair(t testing.TB) (lm, mmproj string) {
	t.Helper()
	dir := t.TempDir()
	lm, mmproj = filepath.Join(dir, "lm.gguf"), filepath.Join(dir, "mmproj.gguf")
	spec, v := models.SmolVLMTiny()
	spec.Seed = 7
	if err := models.WriteSynthVision(lm, mmproj, spec, v); err != nil {
		t.Fatal(err)
	}
	return lm, mmproj
}

// loadVision loads the pair and returns the model with its projector.
func loadVision(t testing.TB) (*Model, *Vision) {
	t.Helper()
	lm, mmproj := visionPair(t)
	m, err := LoadModel(lm, ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	v, err := m.LoadVision(mmproj, VisionParams{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return m, v
}

// writeImage writes a w×h picture (a colour gradient shifted by seed) as
// PNG, or JPEG when the name ends in .jpg.
func writeImage(t testing.TB, dir, name string, w, h, seed int) string {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x*255/w + seed), uint8(y*255/h + 3*seed), uint8((x + y + seed) % 256), 255})
		}
	}
	var b bytes.Buffer
	var err error
	if strings.HasSuffix(name, ".jpg") {
		err = jpeg.Encode(&b, img, &jpeg.Options{Quality: 95})
	} else {
		err = png.Encode(&b, img)
	}
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// tokenEmbedding returns row id of token_embd.weight (F32 in the pair).
func tokenEmbedding(t testing.TB, m *Model, id int32) []float32 {
	t.Helper()
	raw, err := m.File.ReadTensor("token_embd.weight")
	if err != nil {
		t.Fatal(err)
	}
	d := m.NEmbd()
	row := make([]float32, d)
	for j := range row {
		row[j] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*(int(id)*d+j):]))
	}
	return row
}

func visionHooks(m *Model) []models.Hook {
	hs := []models.Hook{{Kind: models.ResidPre, Layer: 0}}
	for l := range m.NLayer() {
		hs = append(hs, models.Hook{Kind: models.ResidPost, Layer: l})
	}
	return append(hs, models.Hook{Kind: models.Logits, Layer: -1})
}

// imageRuns returns the runs of image positions of ids: start and length.
func imageRuns(ids []int32) [][2]int {
	var runs [][2]int
	for i, id := range ids {
		if id >= 0 {
			continue
		}
		if k := len(runs) - 1; k >= 0 && runs[k][0]+runs[k][1] == i {
			runs[k][1]++
			continue
		}
		runs = append(runs, [2]int{i, 1})
	}
	return runs
}

// TestVisionTokenize checks mtmd's chunking of an image prompt for the
// idefics3 projector: one 64×64 tile gives a slice and an overview of 64
// positions each, wrapped in the tokens SmolVLM's processor writes, and
// the same file gives the same ids (one encoding) while another file gives
// other embeddings.
func TestVisionTokenize(t *testing.T) {
	m, v := loadVision(t)
	dir := t.TempDir()
	cat := writeImage(t, dir, "cat.png", 48, 40, 0)
	ids, err := m.Tokenize("<image:"+cat+"> a cat", TokenizeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	runs := imageRuns(ids)
	if len(runs) != 2 || runs[0][1] != 64 || runs[1][1] != 64 {
		t.Fatalf("image runs %v, want two of 64 (slice and overview)", runs)
	}
	if ids[0] != m.BOS() {
		t.Errorf("first id %d, want BOS %d", ids[0], m.BOS())
	}
	// the overview is preceded by "\n\n" <fake_token_around_image>
	// <global-img> and followed by <fake_token_around_image>, then the text
	ov := runs[1][0]
	want := []string{"\n\n", "<fake_token_around_image>", "<global-img>"}
	for k, w := range want {
		if got := string(m.Piece(ids[ov-3+k])); got != w {
			t.Errorf("token %d before the overview is %q, want %q", 3-k, got, w)
		}
	}
	if got := string(m.Piece(ids[ov+64])); got != "<fake_token_around_image>" {
		t.Errorf("token after the overview %q", got)
	}
	text, err := m.Tokenize(" a cat", TokenizeOptions{BOS: BOSNo})
	if err != nil {
		t.Fatal(err)
	}
	if tail := ids[len(ids)-len(text):]; !equalIDs(tail, text) {
		t.Errorf("text after the image %v, want %v", tail, text)
	}
	for i, id := range ids {
		r, ok := m.ImageRow(id)
		if id < 0 != ok {
			t.Fatalf("position %d: ImageRow ok %v for id %d", i, ok, id)
		}
		if ok && (r.Source != cat || r.Parts != 2 || r.Rows != 64) {
			t.Fatalf("position %d: %+v", i, r)
		}
		if ok && m.Kind(id) != models.KindImage {
			t.Fatalf("kind %q", m.Kind(id))
		}
	}
	again, err := m.Tokenize("<image:"+cat+"> a cat", TokenizeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !equalIDs(again, ids) {
		t.Error("the same prompt gave other ids the second time")
	}
	dog := writeImage(t, dir, "dog.jpg", 48, 40, 90)
	other, err := m.Tokenize("<image:"+dog+"> a cat", TokenizeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ea, eb := v.Embedding(ids[runs[0][0]]), v.Embedding(other[runs[0][0]])
	if len(ea) != m.NEmbd() || equalF32(ea, eb) {
		t.Errorf("two different images gave the same first embedding (or width %d)", len(ea))
	}
}

// TestVisionEmbeddingsEnterAtImagePositions captures the language model on
// an image prompt and checks it against an independent path: the same
// positions fed as one batch of embeddings (token_embd rows for the
// tokens, the projector's rows for the image), through llama_batch.embd.
// Positions, order and chunking all show in these numbers: a shifted
// image or a position skipped would change every later row. Both paths
// run the same kernels on the same values; only the batch split differs
// (five llama_decode calls against one), which can change the order of a
// few float additions: 1e-5 relative is far above that and far below the
// effect of moving one row.
func TestVisionEmbeddingsEnterAtImagePositions(t *testing.T) {
	m, v := loadVision(t)
	dir := t.TempDir()
	pic := writeImage(t, dir, "pic.png", 64, 64, 40)
	ids, err := m.Tokenize("look: <image:"+pic+"> what is it?", TokenizeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hooks := visionHooks(m)
	e := NewEngine(m, EngineParams{})
	c, err := e.NewContext([][]int32{ids}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	caches, err := c.Run([][]int32{ids}, RunOptions{Hooks: hooks})
	if err != nil {
		t.Fatal(err)
	}
	mixed := caches[0]
	rows := make([][]float32, len(ids))
	for i, id := range ids {
		if id < 0 {
			rows[i] = v.Embedding(id)
		} else {
			rows[i] = tokenEmbedding(t, m, id)
		}
	}
	// resid_pre.0 is the input: exactly the rows, image rows where the
	// token view puts the image
	in := get(t, mixed, models.Hook{Kind: models.ResidPre, Layer: 0})
	for i := range ids {
		if !equalF32(in.Row(i), rows[i]) {
			t.Fatalf("resid_pre.0 at position %d (id %d) is not the embedding of that position", i, ids[i])
		}
	}
	plain, err := c.RunEmbeddings(rows, hooks)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hooks {
		a, b := get(t, mixed, h), get(t, plain, h)
		if a.Rows() != len(ids) || b.Rows() != len(ids) {
			t.Fatalf("%s: %d and %d rows for %d positions", h.Name(), a.Rows(), b.Rows(), len(ids))
		}
		if d := maxRelDiff(a, b); d > 1e-5 {
			t.Errorf("%s: image prompt and embedding batch differ by %.3g (relative)", h.Name(), d)
		}
	}
	// shifting the image by one position is seen: the check can fail
	shifted := append([][]float32{rows[0], rows[0]}, rows[1:len(rows)-1]...)
	sh, err := c.RunEmbeddings(shifted, hooks)
	if err != nil {
		t.Fatal(err)
	}
	last := models.Hook{Kind: models.ResidPost, Layer: m.NLayer() - 1}
	if d := maxRelDiff(get(t, mixed, last), get(t, sh, last)); d < 1e-3 {
		t.Errorf("a shifted embedding batch differs by only %.3g: the comparison cannot see positions", d)
	}
}

// TestVisionTextUnchanged checks that loading a projector changes nothing
// for a prompt without images: same ids, same activations bit for bit.
func TestVisionTextUnchanged(t *testing.T) {
	lm, mmproj := visionPair(t)
	m, err := LoadModel(lm, ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	prompt := "The cat sat on the mat"
	hooks := visionHooks(m)
	run := func() ([]int32, *models.Cache) {
		ids, err := m.Tokenize(prompt, TokenizeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return ids, runOne(t, m, ContextParams{}, [][]int32{ids}, hooks)[0]
	}
	ids0, c0 := run()
	v, err := m.LoadVision(mmproj, VisionParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ids1, c1 := run()
	if !equalIDs(ids0, ids1) {
		t.Fatalf("ids %v with the projector, %v without", ids1, ids0)
	}
	for _, h := range hooks {
		if !equalF32(get(t, c0, h).Data, get(t, c1, h).Data) {
			t.Errorf("%s changed when the projector was loaded", h.Name())
		}
	}
}

// hugePNG returns a PNG whose header says w×h pixels and that holds no
// pixel data: a decoder that trusted it would allocate w×h×4 bytes.
func hugePNG(t testing.TB, dir string, w, h uint32) string {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, 1, 1))); err != nil {
		t.Fatal(err)
	}
	data := b.Bytes()
	// IHDR data starts after the 8-byte signature, length and type
	binary.BigEndian.PutUint32(data[16:], w)
	binary.BigEndian.PutUint32(data[20:], h)
	binary.BigEndian.PutUint32(data[29:], crc32.ChecksumIEEE(data[12:29]))
	p := filepath.Join(dir, "huge.png")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestVisionErrors checks that every bad input is an error that names the
// problem (never an abort).
func TestVisionErrors(t *testing.T) {
	lm, mmproj := visionPair(t)
	dir := t.TempDir()
	// a projector of another model: same file layout, 48-wide embeddings
	spec, vs := models.SmolVLMTiny()
	vs.ProjDim = 48
	other := filepath.Join(dir, "other-mmproj.gguf")
	if err := models.WriteSynthVision(filepath.Join(dir, "other-lm.gguf"), other, spec, vs); err != nil {
		t.Fatal(err)
	}
	// a model whose vocabulary lacks the tokens mtmd wraps images in
	plainSpec, err := models.SynthPreset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain.gguf")
	if err := models.WriteSynthetic(plain, plainSpec); err != nil {
		t.Fatal(err)
	}
	m, err := LoadModel(lm, ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, tc := range []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "nope.gguf"), "no such file"},
		{"language model as projector", lm, "not clip"},
		{"another model's projector", other, "width 48"},
	} {
		if _, err := m.LoadVision(tc.path, VisionParams{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error mentioning %q", tc.name, err, tc.want)
		}
	}
	if _, err := m.Tokenize("<image:x.png> hi", TokenizeOptions{}); err == nil || !strings.Contains(err.Error(), "--mmproj") {
		t.Errorf("marker without a projector: %v", err)
	}
	v, err := m.LoadVision(mmproj, VisionParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if _, err := m.LoadVision(mmproj, VisionParams{}); err == nil {
		t.Error("a second projector for the same model: no error")
	}
	garbage := filepath.Join(dir, "garbage.png")
	if err := os.WriteFile(garbage, []byte("not an image at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	huge := hugePNG(t, dir, 100000, 100000)
	for _, tc := range []struct {
		name, prompt, want string
	}{
		{"missing image", "<image:" + filepath.Join(dir, "none.png") + "> hi", "no such file"},
		{"marker without a file", "<image:> hi", "names no file"},
		{"unreadable image", "<image:" + garbage + "> hi", "not a PNG, JPEG or GIF"},
		{"huge image", "<image:" + huge + "> hi", "megapixels"},
		{"mtmd's own marker", "<__media__> and <image:" + garbage + ">", "<image:PATH>"},
	} {
		if _, err := m.Tokenize(tc.prompt, TokenizeOptions{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error mentioning %q", tc.name, err, tc.want)
		}
	}
	pm, err := LoadModel(plain, ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	pv, err := pm.LoadVision(mmproj, VisionParams{})
	if err != nil {
		t.Fatal(err) // same width: mtmd loads it
	}
	defer pv.Close()
	pic := writeImage(t, dir, "p.png", 16, 16, 1)
	if _, err := pm.Tokenize("<image:"+pic+">", TokenizeOptions{}); err == nil || !strings.Contains(err.Error(), "not the projector of this model") {
		t.Errorf("vocabulary without the image tokens: %v", err)
	}
}

func equalIDs(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalF32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// TestVisionPatchImageInput patches resid_pre.0 (the input embeddings) at
// the image positions of a prompt with the embeddings of another image:
// the run must then be the other image's run, bit for bit (the same values
// go through the same decode), and a patch that writes the values already
// there must change nothing.
func TestVisionPatchImageInput(t *testing.T) {
	m, v := loadVision(t)
	dir := t.TempDir()
	cat := writeImage(t, dir, "cat.png", 40, 40, 0)
	dog := writeImage(t, dir, "dog.png", 40, 40, 120)
	idsCat, err := m.Tokenize("<image:"+cat+"> it is", TokenizeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	idsDog, err := m.Tokenize("<image:"+dog+"> it is", TokenizeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var pos []int
	var vals []float32
	for i, id := range idsDog {
		if id < 0 {
			pos = append(pos, i)
			vals = append(vals, v.Embedding(id)...)
		}
	}
	last := models.Hook{Kind: models.ResidPost, Layer: m.NLayer() - 1}
	hooks := []models.Hook{last}
	e := NewEngine(m, EngineParams{})
	c, err := e.NewContext([][]int32{idsCat}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dogRun, err := c.Run([][]int32{idsDog}, RunOptions{Hooks: hooks})
	if err != nil {
		t.Fatal(err)
	}
	catRun, err := c.Run([][]int32{idsCat}, RunOptions{Hooks: hooks})
	if err != nil {
		t.Fatal(err)
	}
	in := models.Hook{Kind: models.ResidPre, Layer: 0}
	patched, err := c.Run([][]int32{idsCat}, RunOptions{Hooks: hooks, Patches: [][]Patch{{{Hook: in, Positions: pos, Values: vals}}}})
	if err != nil {
		t.Fatal(err)
	}
	if !equalF32(get(t, patched[0], last).Data, get(t, dogRun[0], last).Data) {
		t.Error("the cat prompt with the dog's image embeddings patched in is not the dog prompt's run")
	}
	if equalF32(get(t, catRun[0], last).Data, get(t, dogRun[0], last).Data) {
		t.Fatal("the two images give the same run: the check above cannot fail")
	}
}
