package llamacpp

/*
#include <stdlib.h>
#include "llama.h"
#include "../tools/mtmd/mtmd.h"
*/
import "C"

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/gif" // image decoders for <image:PATH>
	_ "image/jpeg"
	_ "image/png"
	"io/fs"
	"os"
	"regexp"
	"strings"
	"sync"
	"unsafe"

	_ "github.com/lldiff/lldiff/internal/mtmd" // compiles llama.cpp's mtmd and clip
	"github.com/lldiff/lldiff/models"
)

// Images in prompts go through llama.cpp's multimodal library, mtmd: it
// loads the projector (mmproj) file, cuts the prompt into text chunks and
// image chunks (an image may become several: slices and an overview, with
// the projector's marker tokens between them), and runs the vision tower
// and projector (clip) on its own scheduler, outside the language model's
// graph: the eval callback never sees the vision tower. What lldiff sees
// is the language model reading the image embeddings.
//
// An image position is a negative id in the token sequence, -(1+k) for
// row k of the embeddings the model's Vision keeps, so every analysis that
// works on token sequences runs on image prompts unchanged. Context.decode
// feeds such runs as a llama_batch of embeddings, as mtmd's helper
// mtmd_helper_decode_image_chunk does (same positions, and causal
// attention off during the chunk when mtmd_decode_use_non_causal says so),
// with one difference: it asks for the output of every position, where the
// helper asks for none, since llama.cpp cuts the last layer down to the
// rows that output.

// VisionParams configure LoadVision.
type VisionParams struct {
	// Threads for the vision tower (default: physical cores).
	Threads int
	// MaxPixels is the largest image read, in pixels (default
	// DefaultMaxImagePixels).
	MaxPixels int
}

// DefaultMaxImagePixels is the largest image a prompt may hold by
// default: 40 megapixels, three times a 12-megapixel phone photo and far
// above what a projector looks at (SmolVLM resizes to at most 2048 pixels
// a side); a larger file is refused before it is decoded.
const DefaultMaxImagePixels = 40_000_000

// maxImageFile is the largest image file read, in bytes.
const maxImageFile = 256 << 20

// Vision is a vision projector (mmproj file) loaded for a model: image
// markers in the model's prompts (<image:PATH>) become image positions.
// It is safe for concurrent use; Close must not race with contexts in use.
type Vision struct {
	mu sync.Mutex
	c  *C.struct_mtmd_context
	m  *Model
	p  VisionParams

	// Path is the mmproj file; Projector clip's projector type.
	Path      string
	Projector string

	nEmbd     int
	nonCausal bool

	rows   [][]float32        // embedding of image position -(1+k)
	info   []models.ImageRow  // what each row is
	chunks map[string][]int32 // ids of an encoded chunk, by image hash and part
}

// visions maps a *Model to its *Vision.
var visions sync.Map

// visionOf returns m's Vision, or nil.
func visionOf(m *Model) *Vision {
	v, ok := visions.Load(m)
	if !ok {
		return nil
	}
	return v.(*Vision)
}

// Vision returns the projector loaded for m by LoadVision, or nil.
func (m *Model) Vision() *Vision { return visionOf(m) }

// MMProjError is a projector file that cannot serve a model.
type MMProjError struct {
	Path, Model string
	Problem     string
	Fix         string
}

func (e *MMProjError) Error() string {
	s := fmt.Sprintf("mmproj %s: %s", e.Path, e.Problem)
	if e.Fix != "" {
		s += ": " + e.Fix
	}
	return s
}

// projWidth returns the width of the embeddings the projector of f writes,
// read from its tensors for the projector types whose output matrix is
// known, or from clip.vision.projection_dim; 0 when it cannot tell.
func projWidth(f *models.File, proj string) int {
	dim := func(name string, i int) int {
		t, ok := f.Tensor(name)
		if !ok || len(t.Dims) <= i {
			return 0
		}
		return int(t.Dims[i])
	}
	switch proj {
	case "idefics3":
		return dim("mm.model.fc.weight", 1)
	case "gemma3":
		return dim("mm.input_projection.weight", 0)
	case "mlp", "mlp_norm", "":
		return dim("mm.2.weight", 1)
	}
	if n, ok := f.Uint("clip.vision.projection_dim"); ok {
		return int(n)
	}
	return 0
}

// LoadVision loads the mmproj file at path for m and makes <image:PATH>
// markers in m's prompts image positions. The file is checked first (a
// GGUF of architecture clip with a vision encoder whose embeddings are as
// wide as m's d_model); errors say what is wrong and what to pass. A second
// LoadVision for the same model replaces nothing and is an error. Close the
// Vision when done; Model.Close closes it too.
func (m *Model) LoadVision(path string, p VisionParams) (*Vision, error) {
	if p.Threads <= 0 {
		p.Threads = PhysicalCores()
	}
	if p.MaxPixels <= 0 {
		p.MaxPixels = DefaultMaxImagePixels
	}
	if visionOf(m) != nil {
		return nil, fmt.Errorf("%s already has a projector loaded", m.Path)
	}
	perr := func(problem, fix string) error {
		return &MMProjError{Path: path, Model: m.Path, Problem: problem, Fix: fix}
	}
	if st, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, perr("no such file", "pass the projector GGUF released with the model (often mmproj-*.gguf)")
		}
		return nil, perr(err.Error(), "")
	} else if !st.Mode().IsRegular() {
		return nil, perr("not a regular file", "pass the projector GGUF released with the model")
	}
	f, err := models.Open(path)
	if err != nil {
		return nil, err
	}
	if a := f.Architecture(); a != "clip" {
		return nil, perr(fmt.Sprintf("general.architecture is %q, not clip: this is not a projector file", a),
			"-m takes the language model, --mmproj the projector (mmproj) file that comes with it")
	}
	if hv, _ := f.Bool("clip.has_vision_encoder"); !hv {
		return nil, perr("has no vision encoder (clip.has_vision_encoder is not true; an audio-only projector?)", "pass a projector with a vision encoder")
	}
	for _, k := range []string{"clip.vision.image_mean", "clip.vision.image_std"} {
		v, ok := f.Get(k)
		if a, isF := v.([]float32); !ok || !isF || len(a) < 3 {
			return nil, perr(fmt.Sprintf("%s is missing or not three float32 values", k), "the file is damaged or was written by an old converter; convert the model again")
		}
	}
	proj, _ := f.String("clip.projector_type")
	if proj == "" {
		proj, _ = f.String("clip.vision.projector_type")
	}
	if w := projWidth(f, proj); w != 0 && w != m.NEmbd() {
		return nil, perr(fmt.Sprintf("its projector writes embeddings of width %d but %s has d_model %d", w, m.Path, m.NEmbd()),
			"it is the projector of another model: pass the mmproj file released with this model")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.c == nil {
		return nil, errClosed
	}
	if m.Hooks == nil {
		return nil, fmt.Errorf("%s was loaded vocab-only: it cannot read images", m.Path)
	}
	var logCB C.ggml_log_callback
	var logUD unsafe.Pointer
	C.llama_log_get(&logCB, &logUD)
	C.mtmd_log_set(logCB, logUD)
	cp := C.mtmd_context_params_default()
	cp.use_gpu = C.bool(m.gpuLayers > 0)
	cp.print_timings = false
	cp.n_threads = C.int(p.Threads)
	cp.warmup = false
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	c := C.mtmd_init_from_file(cpath, m.c, cp)
	if c == nil {
		return nil, perr("llama.cpp's mtmd could not load it", "run with -v for its log; the file may be damaged, or of a projector type this llama.cpp does not know")
	}
	if !bool(C.mtmd_support_vision(c)) {
		C.mtmd_free(c)
		return nil, perr("mtmd finds no vision encoder in it", "pass a projector with a vision encoder")
	}
	if bool(C.mtmd_decode_use_mrope(c)) {
		C.mtmd_free(c)
		return nil, perr(fmt.Sprintf("projector type %s places image positions with M-RoPE (Qwen2-VL and later), which lldiff does not support yet", proj), "use a model whose images take one position each (SmolVLM, LLaVA)")
	}
	v := &Vision{c: c, m: m, p: p, Path: path, Projector: proj, nEmbd: int(C.llama_model_n_embd_inp(m.c)),
		nonCausal: bool(C.mtmd_decode_use_non_causal(c)), chunks: map[string][]int32{}}
	visions.Store(m, v)
	return v, nil
}

// Close frees the projector; the model's prompts can no longer hold
// images. A second Close does nothing.
func (v *Vision) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.c != nil {
		C.mtmd_free(v.c)
		v.c = nil
		visions.CompareAndDelete(v.m, v)
	}
	return nil
}

// imageMarker matches <image:PATH>; PATH may not hold '>' or a newline.
var imageMarker = regexp.MustCompile(`<image:([^>\n]*)>`)

// HasImageMarker reports whether text holds an <image:PATH> marker.
func HasImageMarker(text string) bool { return imageMarker.MatchString(text) }

// ImageMarker returns the marker that places the image at path in a
// prompt, or an error when the path cannot be written in one.
func ImageMarker(path string) (string, error) {
	if path == "" || strings.ContainsAny(path, ">\n") {
		return "", fmt.Errorf("image path %q cannot be written in an <image:PATH> marker: it is empty or holds '>' or a newline; rename the file", path)
	}
	return "<image:" + path + ">", nil
}

// rgbImage is a decoded image as mtmd takes it: 3 bytes a pixel, rows top
// to bottom.
type rgbImage struct {
	w, h int
	rgb  []byte
	sum  string // sha256 of the file, hex
}

// loadImage reads and decodes the image file at path (PNG, JPEG or GIF).
func loadImage(path string, maxPixels int) (*rgbImage, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("image %s: no such file (named by the marker <image:%s>): give an existing PNG, JPEG or GIF file", path, path)
		}
		return nil, fmt.Errorf("image %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("image %s: not a regular file", path)
	}
	if st.Size() > maxImageFile {
		return nil, fmt.Errorf("image %s: %d bytes, more than lldiff reads (%d MiB): scale it down first", path, st.Size(), maxImageFile>>20)
	}
	data := make([]byte, st.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		return nil, fmt.Errorf("image %s: %w", path, err)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("image %s: not a PNG, JPEG or GIF image lldiff can read (%v)", path, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, fmt.Errorf("image %s: %dx%d: an image needs at least one pixel", path, cfg.Width, cfg.Height)
	}
	if int64(cfg.Width)*int64(cfg.Height) > int64(maxPixels) {
		return nil, fmt.Errorf("image %s: %dx%d is %.1f megapixels, more than lldiff reads (%.1f): scale it down first (the projector resizes it far below that anyway)",
			path, cfg.Width, cfg.Height, float64(cfg.Width)*float64(cfg.Height)/1e6, float64(maxPixels)/1e6)
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("image %s: the %s data is damaged (%v)", path, format, err)
	}
	b := img.Bounds()
	out := &rgbImage{w: b.Dx(), h: b.Dy(), rgb: make([]byte, 0, 3*b.Dx()*b.Dy())}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
			out.rgb = append(out.rgb, c.R, c.G, c.B)
		}
	}
	s := sha256.Sum256(data)
	out.sum = hex.EncodeToString(s[:])
	return out, nil
}

// tokenize turns text with <image:PATH> markers into token ids and image
// positions. Each marker goes to mtmd_tokenize with the text before it
// (mtmd tokenizes the text on either side of a marker separately, so the
// tokens are the ones one call over the whole prompt gives), which makes
// every image chunk of that call a part of that image; each part is
// encoded once (the same file gives the same ids again) and its rows
// become image positions. BOS is added as Model.Tokenize adds it.
func (v *Vision) tokenize(text string, o TokenizeOptions) ([]int32, error) {
	m := v.m
	// BOS as Tokenize decides it: the empty text gives exactly the BOS
	// token when one is added
	ids, err := m.Tokenize("", o)
	if err != nil {
		return nil, err
	}
	marker := C.GoString(C.mtmd_default_marker())
	if strings.Contains(text, marker) {
		return nil, fmt.Errorf("the prompt holds %s, the marker mtmd uses inside: write images as <image:PATH>", marker)
	}
	type segment struct {
		text string
		img  *rgbImage
		name string
	}
	var segs []segment
	last := 0
	for _, l := range imageMarker.FindAllStringSubmatchIndex(text, -1) {
		path := text[l[2]:l[3]]
		if path == "" {
			return nil, fmt.Errorf("the marker <image:> names no file: write <image:PATH>")
		}
		img, err := loadImage(path, v.p.MaxPixels)
		if err != nil {
			return nil, err
		}
		segs = append(segs, segment{text: text[last:l[0]] + marker, img: img, name: path})
		last = l[1]
	}
	if last < len(text) {
		segs = append(segs, segment{text: text[last:]})
	}

	v.mu.Lock()
	defer v.mu.Unlock()
	if v.c == nil {
		return nil, errors.New("llamacpp: the projector is closed")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.c == nil {
		return nil, errClosed
	}
	for _, sg := range segs {
		got, err := v.tokenizeSegment(sg.text, sg.img, sg.name, o.ParseSpecial)
		if err != nil {
			return nil, err
		}
		ids = append(ids, got...)
	}
	return ids, nil
}

// tokenizeSegment runs mtmd_tokenize on text, which holds one image marker
// when img is set and none otherwise. v.mu and v.m.mu are held.
func (v *Vision) tokenizeSegment(text string, img *rgbImage, name string, special bool) ([]int32, error) {
	m := v.m
	var bm *C.mtmd_bitmap
	var bp **C.mtmd_bitmap
	nb := 0
	if img != nil {
		cdata := C.CBytes(img.rgb)
		bm = C.mtmd_bitmap_init(C.uint32_t(img.w), C.uint32_t(img.h), (*C.uchar)(cdata))
		C.free(cdata)
		if bm == nil {
			return nil, fmt.Errorf("image %s: mtmd could not take it", name)
		}
		defer C.mtmd_bitmap_free(bm)
		cid := C.CString(img.sum)
		C.mtmd_bitmap_set_id(bm, cid)
		C.free(unsafe.Pointer(cid))
		// mtmd reads the array of bitmap pointers during the call only;
		// the array is C memory (cgo may not pass Go memory holding C
		// pointers)
		arr := (**C.mtmd_bitmap)(C.malloc(C.size_t(unsafe.Sizeof(bm))))
		defer C.free(unsafe.Pointer(arr))
		*arr = bm
		bp, nb = arr, 1
	}
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	in := C.mtmd_input_text{text: ctext, add_special: false, parse_special: C.bool(special)}
	chunks := C.mtmd_input_chunks_init()
	defer C.mtmd_input_chunks_free(chunks)
	if r := C.mtmd_tokenize(v.c, chunks, &in, bp, C.size_t(nb)); r != 0 {
		return nil, fmt.Errorf("image %s: mtmd could not preprocess it (status %d); run with -v for its log", name, int(r))
	}
	n := int(C.mtmd_input_chunks_size(chunks))
	parts := 0
	for i := range n {
		if C.mtmd_input_chunk_get_type(C.mtmd_input_chunks_get(chunks, C.size_t(i))) == C.MTMD_INPUT_CHUNK_TYPE_IMAGE {
			parts++
		}
	}
	var ids []int32
	part := 0
	for i := range n {
		ch := C.mtmd_input_chunks_get(chunks, C.size_t(i))
		switch C.mtmd_input_chunk_get_type(ch) {
		case C.MTMD_INPUT_CHUNK_TYPE_TEXT:
			var nt C.size_t
			tp := C.mtmd_input_chunk_get_tokens_text(ch, &nt)
			if nt == 0 {
				continue
			}
			for _, t := range unsafe.Slice(tp, int(nt)) {
				if t < 0 || int(t) >= m.nVocab {
					return nil, fmt.Errorf("mtmd wraps images in tokens that the vocabulary of %s lacks (projector type %s): %s is not the projector of this model; pass the mmproj file released with it", m.Path, v.Projector, v.Path)
				}
				ids = append(ids, int32(t))
			}
		case C.MTMD_INPUT_CHUNK_TYPE_IMAGE:
			rows, err := v.encodeChunk(ch, img.sum, name, part, parts)
			if err != nil {
				return nil, err
			}
			ids = append(ids, rows...)
			part++
		default:
			return nil, fmt.Errorf("mtmd returned a chunk that is neither text nor image")
		}
	}
	return ids, nil
}

// encodeChunk returns the ids of image chunk ch, part part of parts of the
// image with hash sum read from name, encoding it with the vision tower
// the first time.
func (v *Vision) encodeChunk(ch *C.mtmd_input_chunk, sum, name string, part, parts int) ([]int32, error) {
	key := fmt.Sprintf("%s#%d/%d", sum, part, parts)
	if ids, ok := v.chunks[key]; ok {
		return ids, nil
	}
	nt := int(C.mtmd_input_chunk_get_n_tokens(ch))
	if np := int(C.mtmd_input_chunk_get_n_pos(ch)); np != nt {
		return nil, fmt.Errorf("image %s: mtmd gives %d positions for %d embeddings; lldiff supports one position per embedding", name, np, nt)
	}
	if r := C.mtmd_encode_chunk(v.c, ch); r != 0 {
		return nil, fmt.Errorf("image %s: the vision tower failed (status %d); run with -v for its log", name, int(r))
	}
	p := C.mtmd_get_output_embd(v.c)
	if p == nil {
		return nil, fmt.Errorf("image %s: the vision tower returned no embeddings", name)
	}
	all := unsafe.Slice((*float32)(unsafe.Pointer(p)), nt*v.nEmbd)
	ids := make([]int32, nt)
	for r := range nt {
		row := append([]float32(nil), all[r*v.nEmbd:(r+1)*v.nEmbd]...)
		ids[r] = int32(-1 - len(v.rows))
		v.rows = append(v.rows, row)
		v.info = append(v.info, models.ImageRow{Source: name, Part: part, Parts: parts, Row: r, Rows: nt})
	}
	v.chunks[key] = ids
	return ids, nil
}

// row returns the embedding of image position id and what it is.
func (v *Vision) row(id int32) ([]float32, models.ImageRow, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	k := int(-1 - id)
	if id >= 0 || k >= len(v.rows) {
		return nil, models.ImageRow{}, false
	}
	return v.rows[k], v.info[k], true
}

// Embedding returns a copy of the embedding image position id feeds the
// language model, or nil when id is not one.
func (v *Vision) Embedding(id int32) []float32 {
	r, _, ok := v.row(id)
	if !ok {
		return nil
	}
	return append([]float32(nil), r...)
}

// ImageRow returns what image position id stands for (false for a token
// id or an id no tokenization of this model gave).
func (m *Model) ImageRow(id int32) (models.ImageRow, bool) {
	v := visionOf(m)
	if v == nil {
		return models.ImageRow{}, false
	}
	_, r, ok := v.row(id)
	return r, ok
}

// ImageRow implements models.ImageVocab.
func (e *Engine) ImageRow(id int32) (models.ImageRow, bool) { return e.m.ImageRow(id) }

// imagePrintable is the one-line form of image position id.
func imagePrintable(r models.ImageRow) string {
	if r.Parts > 1 {
		return fmt.Sprintf("[image %s part %d/%d %d/%d]", r.Source, r.Part+1, r.Parts, r.Row+1, r.Rows)
	}
	return fmt.Sprintf("[image %s %d/%d]", r.Source, r.Row+1, r.Rows)
}

// checkImageIDs checks the negative ids of s against m's projector.
func (m *Model) checkImageIDs(i int, s []int32) error {
	v := visionOf(m)
	for _, t := range s {
		if t >= 0 {
			continue
		}
		if v == nil {
			return fmt.Errorf("sequence %d has image positions but no projector is loaded: pass --mmproj", i)
		}
		if _, _, ok := v.row(t); !ok {
			return fmt.Errorf("sequence %d has image position id %d that no tokenization gave", i, t)
		}
	}
	return nil
}

// hasImages reports whether toks holds an image position.
func hasImages(toks []batchTok) bool {
	for _, t := range toks {
		if t.tok < 0 {
			return true
		}
	}
	return false
}

// decodeImages is decode for token runs that hold image positions: text
// runs are decoded as token batches, image runs (one chunk at a time) as
// batches of embeddings. Rows of the recorder slots that hold the input
// embeddings (inp_embd, a graph input when a batch is embeddings, never
// seen by the eval callback) are recorded and patched through
// Recorder.Input.
func (c *Context) decodeImages(toks []batchTok, out func(i int, logits []float32)) error {
	v := visionOf(c.m)
	if v == nil {
		return fmt.Errorf("llamacpp: image positions but no projector is loaded")
	}
	nVocab, d := c.m.nVocab, v.nEmbd
	var embSlots []int
	for s := range c.rec.Slots() {
		if n := c.rec.Node(s); n.Name == "inp_embd" && n.Op == "" && n.Src == "" {
			embSlots = append(embSlots, s)
		}
	}
	nb := min(c.p.NBatch, len(toks))
	tb := C.llama_batch_init(C.int32_t(nb), 0, 1)
	defer C.llama_batch_free(tb)
	eb := C.llama_batch_init(C.int32_t(nb), C.int32_t(d), 1)
	defer C.llama_batch_free(eb)
	for b0 := 0; b0 < len(toks); {
		img := toks[b0].tok < 0
		b1 := b0 + 1
		var first models.ImageRow
		if img {
			_, first, _ = v.row(toks[b0].tok)
		}
		for b1 < len(toks) && b1-b0 < c.p.NBatch && (toks[b1].tok < 0) == img {
			if img {
				_, r, _ := v.row(toks[b1].tok)
				// one chunk per decode: a chunk starts at its row 0
				if r.Row == 0 || toks[b1].seq != toks[b0].seq {
					break
				}
			}
			b1++
		}
		n := b1 - b0
		if img && v.nonCausal && (first.Row != 0 || n != first.Rows || n > c.p.NUBatch) {
			return fmt.Errorf("image %s: this projector attends across all %d positions of an image chunk at once, so a chunk must be decoded whole in one batch: pass -b and -u of at least %d",
				first.Source, first.Rows, first.Rows)
		}
		batch := tb
		if img {
			batch = eb
		}
		pos := unsafe.Slice(batch.pos, n)
		nseq := unsafe.Slice(batch.n_seq_id, n)
		seqIDs := unsafe.Slice(batch.seq_id, n)
		outs := unsafe.Slice(batch.logits, n)
		for i := range n {
			t := toks[b0+i]
			pos[i] = C.llama_pos(t.pos)
			nseq[i] = 1
			*seqIDs[i] = C.llama_seq_id(t.seq)
			outs[i] = 0
			if t.logits {
				outs[i] = 1
			}
		}
		var before []int
		if img {
			rows := make([]float32, 0, n*d)
			for i := range n {
				r, _, _ := v.row(toks[b0+i].tok)
				rows = append(rows, r...)
			}
			for _, s := range embSlots {
				before = append(before, c.rec.Seen(s))
				var err error
				if rows, err = c.rec.Input(s, d, rows); err != nil {
					return err
				}
			}
			copy(unsafe.Slice((*float32)(unsafe.Pointer(batch.embd)), n*d), rows)
		} else {
			ids := unsafe.Slice(batch.token, n)
			for i := range n {
				ids[i] = C.llama_token(toks[b0+i].tok)
			}
		}
		batch.n_tokens = C.int32_t(n)
		if err := c.cancelled(); err != nil {
			return err
		}
		if img && v.nonCausal {
			C.llama_set_causal_attn(c.c, false)
		}
		ret := C.llama_decode(c.c, batch)
		if img && v.nonCausal {
			C.llama_set_causal_attn(c.c, true)
		}
		c.decodes++
		if err := c.cancelled(); ret == 2 && err != nil {
			return err
		}
		if err := c.rec.Err(); err != nil {
			return err
		}
		switch {
		case ret == 1:
			return fmt.Errorf("llama.cpp found no room in the KV cache for %d positions (context %d): pass a larger context (-c)", len(toks), c.p.NCtx)
		case ret != 0:
			return fmt.Errorf("llama_decode failed with status %d; run with -v for llama.cpp's log", int(ret))
		}
		for k, s := range embSlots {
			if img && c.rec.Seen(s) != before[k]+n {
				// the architecture scales the input embeddings in a node
				// of the same name: the rows would be recorded twice
				return fmt.Errorf("capture of %s at image positions is not supported for %s: capture resid_post.0 or later", c.rec.Node(s), c.m.Arch())
			}
		}
		for i := range n {
			if !toks[b0+i].logits {
				continue
			}
			p := C.llama_get_logits_ith(c.c, C.int32_t(i))
			if p == nil {
				return fmt.Errorf("llama.cpp returned no logits for position %d", b0+i)
			}
			out(b0+i, unsafe.Slice((*float32)(unsafe.Pointer(p)), nVocab))
		}
		b0 = b1
	}
	return nil
}

// RunEmbeddings decodes one sequence given as input embeddings (one row of
// d_model values per position, as a llama_batch with embd set) and
// returns its cache with hooks and the logits of every position. It is the
// plain path an image prompt's mixed decode must agree with.
func (c *Context) RunEmbeddings(rows [][]float32, hooks []models.Hook) (*models.Cache, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c == nil {
		return nil, fmt.Errorf("llamacpp: context is closed")
	}
	d := int(C.llama_model_n_embd_inp(c.m.c))
	if len(rows) == 0 || len(rows) > c.p.NCtx || len(rows) > c.p.NBatch {
		return nil, fmt.Errorf("RunEmbeddings takes 1 to %d rows (one batch), got %d", min(c.p.NCtx, c.p.NBatch), len(rows))
	}
	var ns nodeSlots
	hookSlot, err := c.hookSlots(&ns, hooks)
	if err != nil {
		return nil, err
	}
	if err := c.rec.Select(ns.nodes); err != nil {
		return nil, err
	}
	c.rec.SetRecord(len(ns.nodes) > 0)
	C.llama_memory_clear(C.llama_get_memory(c.c), true)
	c.rec.Reset()
	n := len(rows)
	b := C.llama_batch_init(C.int32_t(n), C.int32_t(d), 1)
	defer C.llama_batch_free(b)
	embd := unsafe.Slice((*float32)(unsafe.Pointer(b.embd)), n*d)
	pos := unsafe.Slice(b.pos, n)
	nseq := unsafe.Slice(b.n_seq_id, n)
	seqIDs := unsafe.Slice(b.seq_id, n)
	outs := unsafe.Slice(b.logits, n)
	for i, r := range rows {
		if len(r) != d {
			return nil, fmt.Errorf("row %d has %d values, the model takes %d", i, len(r), d)
		}
		copy(embd[i*d:], r)
		pos[i], nseq[i], *seqIDs[i], outs[i] = C.llama_pos(i), 1, 0, 1
	}
	b.n_tokens = C.int32_t(n)
	for s := range ns.nodes {
		if nd := ns.nodes[s]; nd.Name == "inp_embd" && nd.Op == "" && nd.Src == "" {
			if _, err := c.rec.Input(s, d, embd); err != nil {
				return nil, err
			}
		}
	}
	if ret := C.llama_decode(c.c, b); ret != 0 {
		return nil, fmt.Errorf("llama_decode failed with status %d", int(ret))
	}
	c.decodes++
	if err := c.rec.Err(); err != nil {
		return nil, err
	}
	cache := models.NewCache(make([]int32, n), c.m.NLayer())
	for i, h := range hooks {
		s := hookSlot[i]
		if s < 0 {
			continue
		}
		w, data := c.rec.Rows(s)
		if len(data) != w*n {
			return nil, fmt.Errorf("capture of node %s recorded %d values of width %d for %d positions", c.rec.Node(s), len(data), w, n)
		}
		cache.Set(&models.Activation{Hook: h, Width: w, Data: data})
	}
	nv := c.m.nVocab
	lg := make([]float32, n*nv)
	for i := range n {
		p := C.llama_get_logits_ith(c.c, C.int32_t(i))
		if p == nil {
			return nil, fmt.Errorf("llama.cpp returned no logits for row %d", i)
		}
		copy(lg[i*nv:], unsafe.Slice((*float32)(unsafe.Pointer(p)), nv))
	}
	cache.Set(&models.Activation{Hook: models.Hook{Kind: models.Logits, Layer: -1}, Width: nv, Data: lg})
	return cache, nil
}
