package analysis

import (
	"fmt"
	"slices"
	"strings"

	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/models"
)

// ImagePos says which image embedding a position of a prompt holds (the
// "image" field of a token in JSON documents; absent for tokens).
type ImagePos struct {
	// Image numbers the prompt's images from 1, in the order of their
	// markers.
	Image  int    `json:"image"`
	Source string `json:"source"`
	// Part (from 1) of Parts: a projector may cut an image into several
	// runs of positions (slices and an overview), with tokens between.
	Part  int `json:"part"`
	Parts int `json:"parts"`
	// Row (from 0) of the Rows positions of this part.
	Row  int `json:"row"`
	Rows int `json:"rows"`
}

// imagePositions fills the Image field of the tokens of ids that are
// image positions of v (when v places images: models.ImageVocab).
func imagePositions(v models.Vocab, ids []int32, toks []Token) {
	iv, ok := v.(models.ImageVocab)
	if !ok {
		return
	}
	n := 0
	for i, id := range ids {
		if id >= 0 {
			continue
		}
		r, ok := iv.ImageRow(id)
		if !ok {
			continue
		}
		if r.Part == 0 && r.Row == 0 {
			n++ // a new image starts with the first row of its first part
		}
		toks[i].Image = &ImagePos{Image: max(n, 1), Source: r.Source, Part: r.Part + 1, Parts: r.Parts, Row: r.Row, Rows: r.Rows}
	}
}

// ImageSpan is one run of image positions: one part of one image.
type ImageSpan struct {
	Image  int    `json:"image"`
	Source string `json:"source"`
	Part   int    `json:"part"`
	Parts  int    `json:"parts"`
	Start  int    `json:"start"`
	Len    int    `json:"len"`
}

// Label is the span as token views show it: "[image 1: 64 positions]", or
// "[image 1 part 2/3: 64 positions]" for an image in several parts.
func (s ImageSpan) Label() string {
	if s.Parts > 1 {
		return fmt.Sprintf("[image %d part %d/%d: %d positions]", s.Image, s.Part, s.Parts, s.Len)
	}
	return fmt.Sprintf("[image %d: %d positions]", s.Image, s.Len)
}

// ImageSpans returns the runs of image positions of toks, in order.
func ImageSpans(toks []Token) []ImageSpan {
	var out []ImageSpan
	for i, t := range toks {
		if t.Image == nil {
			continue
		}
		if k := len(out) - 1; k >= 0 && t.Image.Row > 0 && out[k].Start+out[k].Len == i && out[k].Image == t.Image.Image && out[k].Part == t.Image.Part {
			out[k].Len++
			continue
		}
		out = append(out, ImageSpan{Image: t.Image.Image, Source: t.Image.Source, Part: t.Image.Part, Parts: t.Image.Parts, Start: i, Len: 1})
	}
	return out
}

// TokenView returns the pieces of toks for a one-line token view, each run
// of image positions collapsed into one label ("[image 1: 64 positions]").
func TokenView(toks []Token) []string {
	var out []string
	spans := ImageSpans(toks)
	for i := 0; i < len(toks); {
		if k := slices.IndexFunc(spans, func(s ImageSpan) bool { return s.Start == i }); k >= 0 {
			out = append(out, spans[k].Label())
			i += spans[k].Len
			continue
		}
		out = append(out, toks[i].Piece)
		i++
	}
	return out
}

// imagePosOf returns the image positions of toks, in order.
func imagePosOf(toks []Token) []int {
	var ps []int
	for i, t := range toks {
		if t.Image != nil {
			ps = append(ps, i)
		}
	}
	return ps
}

// HasImagePositions reports whether a position specification uses the
// words image or image-mean (see ParseImagePositions).
func HasImagePositions(spec string) bool {
	for _, part := range strings.Split(spec, ",") {
		for _, side := range strings.Split(part, ":") {
			if s := strings.TrimSpace(side); s == "image" || s == "image-mean" {
				return true
			}
		}
	}
	return false
}

// ImagePairs are compared positions where a side may be the mean over a
// prompt's image positions: MeanA (MeanB) is the position index that
// stands for it, len(toksA) (len(toksB)), one past the last token.
type ImagePairs struct {
	Pairs        []diff.PosPair
	MeanA, MeanB bool
}

// ParseImagePositions resolves a position specification that uses the
// words image and image-mean on prompts of tokens toksA and toksB. On
// either side of an A:B pair (or alone, for both sides):
//
//	image       every image position of the prompt; "image" alone, or
//	            image:image, pairs the k-th image position of A with the
//	            k-th of B (the images must give as many positions);
//	            image:last pairs each of A's with B's last token
//	image-mean  the mean vector over the prompt's image positions (one
//	            row standing for the whole image span)
//
// Other parts and sides take diff.ParsePositions' forms ("last", "-1",
// "3:4"). A prompt without images, or image against image spans of other
// lengths, is an error that says what to write instead.
func ParseImagePositions(spec string, toksA, toksB []Token) (*ImagePairs, error) {
	imgA, imgB := imagePosOf(toksA), imagePosOf(toksB)
	nA, nB := len(toksA), len(toksB)
	out := &ImagePairs{}
	seen := map[diff.PosPair]bool{}
	add := func(p diff.PosPair) {
		if !seen[p] {
			seen[p] = true
			out.Pairs = append(out.Pairs, p)
		}
	}
	perr := func(part, problem string) error {
		return &InputError{Err: &diff.PositionError{Spec: spec, Part: part, Problem: problem}}
	}
	// side resolves one side to its positions; mean is the virtual index
	side := func(part, s, name string, n int, img []int) ([]int, error) {
		switch s {
		case "image", "image-mean":
			if len(img) == 0 {
				return nil, perr(part, fmt.Sprintf("prompt %s has no image: put an <image:PATH> marker in it (or --image-%s PATH), or compare it at a token (last, -1)", name, strings.ToLower(name)))
			}
			if s == "image-mean" {
				if name == "A" {
					out.MeanA = true
				} else {
					out.MeanB = true
				}
				return []int{n}, nil
			}
			return img, nil
		}
		spec := s + ":0"
		if name == "B" {
			spec = "0:" + s
		}
		ps, err := diff.ParsePositions(spec, max(nA, 1), max(nB, 1))
		if err != nil {
			return nil, perr(part, fmt.Sprintf("%q: %s", s, strings.TrimPrefix(err.Error(), fmt.Sprintf("positions %q: ", spec))))
		}
		if name == "A" {
			return []int{ps[0].A}, nil
		}
		return []int{ps[0].B}, nil
	}
	for _, raw := range strings.Split(spec, ",") {
		part := strings.TrimSpace(raw)
		as, bs, ok := strings.Cut(part, ":")
		if !ok {
			bs = as
		}
		as, bs = strings.TrimSpace(as), strings.TrimSpace(bs)
		pa, err := side(part, as, "A", nA, imgA)
		if err != nil {
			return nil, err
		}
		pb, err := side(part, bs, "B", nB, imgB)
		if err != nil {
			return nil, err
		}
		switch {
		case len(pa) > 1 && len(pb) > 1:
			if len(pa) != len(pb) {
				return nil, perr(part, fmt.Sprintf("pairs the image positions of A (%d) with those of B (%d) one by one, but their counts differ: compare the means (image-mean) or one side at a token (image-mean:last)", len(pa), len(pb)))
			}
			for k := range pa {
				add(diff.PosPair{A: pa[k], B: pb[k]})
			}
		default:
			for _, a := range pa {
				for _, b := range pb {
					add(diff.PosPair{A: a, B: b})
				}
			}
		}
	}
	return out, nil
}

// withMeanRow returns c with one more row in every activation: the mean
// of rows (row indices of c), standing for the image span. c's rows are
// not changed.
func withMeanRow(c *models.Cache, rows []int) *models.Cache {
	out := models.NewCache(c.Tokens, c.NLayer)
	for _, h := range c.Hooks() {
		a, _ := c.At(h)
		data := make([]float32, len(a.Data)+a.Width)
		copy(data, a.Data)
		mean := data[len(a.Data):]
		// sum in float64: image spans run to thousands of rows
		acc := make([]float64, a.Width)
		for _, r := range rows {
			for j, x := range a.Row(r) {
				acc[j] += float64(x)
			}
		}
		for j := range mean {
			mean[j] = float32(acc[j] / float64(len(rows)))
		}
		out.Set(&models.Activation{Hook: h, Width: a.Width, Data: data})
	}
	return out
}

// imageMeanRows replaces the virtual image-mean position in the rows to
// run (pos[0] for A, pos[1] for B, one list when same) by the prompt's
// image positions, and returns the new lists and, per side, the row
// indices in them to average (nil for a side without an image mean).
func imageMeanRows(img *ImagePairs, pos [][]int, toksA, toksB []Token, same bool) ([][]int, [2][]int) {
	var mean [2][]int
	if img == nil || !(img.MeanA || img.MeanB) {
		return pos, mean
	}
	out := slices.Clone(pos)
	for side, on := range []bool{img.MeanA, img.MeanB} {
		if !on || (same && side == 1) {
			continue
		}
		toks := toksA
		if side == 1 {
			toks = toksB
		}
		k := side
		if same {
			k = 0
		}
		ps := slices.DeleteFunc(slices.Clone(out[k]), func(p int) bool { return p >= len(toks) })
		ps = append(ps, imagePosOf(toks)...)
		slices.Sort(ps)
		ps = slices.Compact(ps)
		out[k] = ps
		for _, p := range imagePosOf(toks) {
			mean[side] = append(mean[side], slices.Index(ps, p))
		}
	}
	return out, mean
}

// imageMeanWarnings says which position stands for an image mean.
func imageMeanWarnings(img *ImagePairs, toksA, toksB []Token) []string {
	if img == nil {
		return nil
	}
	var w []string
	for _, s := range []struct {
		on   bool
		name string
		toks []Token
	}{{img.MeanA, "A", toksA}, {img.MeanB, "B", toksB}} {
		if s.on {
			w = append(w, fmt.Sprintf("position %d of %s stands for the mean over its %d image positions (its predictions are the mean of their logits)", len(s.toks), s.name, len(imagePosOf(s.toks))))
		}
	}
	return w
}
