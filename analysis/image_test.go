package analysis

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/models"
)

// imageToks builds a token list: "t" is a token, a number n a part of n
// image positions (a new image when the part number is 1).
func imageToks(parts ...any) []Token {
	var out []Token
	img := 0
	for _, p := range parts {
		switch x := p.(type) {
		case string:
			out = append(out, Token{Pos: len(out), Piece: x, Text: x, Kind: "normal"})
		case [3]int: // part, parts, rows
			if x[0] == 1 {
				img++
			}
			for r := range x[2] {
				out = append(out, Token{Pos: len(out), ID: int32(-1 - len(out)), Kind: string(models.KindImage),
					Image: &ImagePos{Image: img, Source: "x.png", Part: x[0], Parts: x[1], Row: r, Rows: x[2]}})
			}
		}
	}
	return out
}

func TestImageSpansAndView(t *testing.T) {
	toks := imageToks("<s>", [3]int{1, 2, 4}, "\n", [3]int{2, 2, 4}, "a", [3]int{1, 1, 3}, "cat")
	spans := ImageSpans(toks)
	want := []ImageSpan{
		{Image: 1, Source: "x.png", Part: 1, Parts: 2, Start: 1, Len: 4},
		{Image: 1, Source: "x.png", Part: 2, Parts: 2, Start: 6, Len: 4},
		{Image: 2, Source: "x.png", Part: 1, Parts: 1, Start: 11, Len: 3},
	}
	if !slices.Equal(spans, want) {
		t.Fatalf("spans %+v, want %+v", spans, want)
	}
	view := TokenView(toks)
	wantView := []string{"<s>", "[image 1 part 1/2: 4 positions]", "\n", "[image 1 part 2/2: 4 positions]", "a", "[image 2: 3 positions]", "cat"}
	if !slices.Equal(view, wantView) {
		t.Errorf("view %q, want %q", view, wantView)
	}
	// two images back to back are two spans: the second starts at row 0
	back := imageToks([3]int{1, 1, 2}, [3]int{1, 1, 2})
	if s := ImageSpans(back); len(s) != 2 || s[1].Start != 2 || s[1].Image != 2 {
		t.Errorf("adjacent images: %+v", s)
	}
}

func TestParseImagePositions(t *testing.T) {
	a := imageToks("<s>", [3]int{1, 1, 3}, "x", "y") // image at 1..3, 6 tokens
	b := imageToks("<s>", "p", [3]int{1, 1, 3})      // image at 2..4, 5 tokens
	txt := imageToks("<s>", "a", "b")
	for _, tc := range []struct {
		spec       string
		a, b       []Token
		want       []diff.PosPair
		meanA, mnB bool
	}{
		{"image", a, b, []diff.PosPair{{A: 1, B: 2}, {A: 2, B: 3}, {A: 3, B: 4}}, false, false},
		{"image:last", a, txt, []diff.PosPair{{A: 1, B: 2}, {A: 2, B: 2}, {A: 3, B: 2}}, false, false},
		{"image-mean:last", a, txt, []diff.PosPair{{A: 6, B: 2}}, true, false},
		{"image-mean", a, b, []diff.PosPair{{A: 6, B: 5}}, true, true},
		{"last:image-mean,0", txt, b, []diff.PosPair{{A: 2, B: 5}, {A: 0, B: 0}}, false, true},
		{"-1:image", a, b, []diff.PosPair{{A: 5, B: 2}, {A: 5, B: 3}, {A: 5, B: 4}}, false, false},
	} {
		got, err := ParseImagePositions(tc.spec, tc.a, tc.b)
		if err != nil {
			t.Errorf("%s: %v", tc.spec, err)
			continue
		}
		if !slices.Equal(got.Pairs, tc.want) || got.MeanA != tc.meanA || got.MeanB != tc.mnB {
			t.Errorf("%s: %+v, want %v mean %v %v", tc.spec, got, tc.want, tc.meanA, tc.mnB)
		}
	}
	short := imageToks("<s>", [3]int{1, 1, 2})
	for _, tc := range []struct {
		spec, want string
		a, b       []Token
	}{
		{"image", "prompt B has no image", a, txt},
		{"image-mean:last", "prompt A has no image", txt, a},
		{"image", "counts differ", a, short},
		{"image:9", "9", a, b},
	} {
		_, err := ParseImagePositions(tc.spec, tc.a, tc.b)
		var ie *InputError
		if err == nil || !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want an InputError mentioning %q", tc.spec, err, tc.want)
		}
	}
	if HasImagePositions("last") || HasImagePositions("3:4") || !HasImagePositions("2:image-mean") {
		t.Error("HasImagePositions")
	}
}

func TestWithMeanRow(t *testing.T) {
	h := models.Hook{Kind: models.ResidPost, Layer: 0}
	c := models.NewCache([]int32{1, 2, 3}, 1)
	c.Set(&models.Activation{Hook: h, Width: 2, Data: []float32{1, 10, 2, 20, 6, 60}})
	m := withMeanRow(c, []int{0, 2})
	a, _ := m.At(h)
	if a.Rows() != 4 || !slices.Equal(a.Row(3), []float32{3.5, 35}) || !slices.Equal(a.Row(1), []float32{2, 20}) {
		t.Errorf("rows %v, want the three rows and their mean over rows 0 and 2 (3.5, 35)", a.Data)
	}
	orig, _ := c.At(h)
	if len(orig.Data) != 6 {
		t.Error("withMeanRow changed its input")
	}
}

func TestImageMeanRows(t *testing.T) {
	a := imageToks("<s>", [3]int{1, 1, 3}, "x") // 5 tokens, image at 1..3
	img := &ImagePairs{Pairs: []diff.PosPair{{A: 5, B: 2}}, MeanA: true}
	pos, mean := imageMeanRows(img, [][]int{{5}, {2}}, a, imageToks("<s>", "a", "b"), false)
	if !slices.Equal(pos[0], []int{1, 2, 3}) || !slices.Equal(pos[1], []int{2}) || !slices.Equal(mean[0], []int{0, 1, 2}) || mean[1] != nil {
		t.Errorf("pos %v mean %v", pos, mean)
	}
}
