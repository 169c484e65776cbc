package cli

import (
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/analysis"
)

// visionFiles writes the smolvlm-tiny pair with `lldiff synth` and two
// small PNG pictures, and returns their paths.
func visionFiles(t *testing.T) (lm, mmproj, cat, dog string) {
	t.Helper()
	dir := t.TempDir()
	lm, mmproj = filepath.Join(dir, "lm.gguf"), filepath.Join(dir, "mmproj.gguf")
	out, _, err := run(t, false, "synth", "--preset", "smolvlm-tiny", "-o", lm, "--mmproj-out", mmproj)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "idefics3") || !strings.Contains(out, "64 positions per tile") {
		t.Errorf("synth output: %s", out)
	}
	pic := func(name string, shift int) string {
		img := image.NewRGBA(image.Rect(0, 0, 40, 32))
		for y := range 32 {
			for x := range 40 {
				img.Set(x, y, color.RGBA{uint8(6*x + shift), uint8(8*y - shift), uint8(x * y), 255})
			}
		}
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := png.Encode(f, img); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return lm, mmproj, pic("cat.png", 0), pic("dog.png", 100)
}

// TestVisionCompare runs the example: an image prompt against a
// text prompt at the next token, then two images position by position and
// an image mean against a word.
func TestVisionCompare(t *testing.T) {
	lm, mmproj, cat, dog := visionFiles(t)
	doc := runJSON[analysis.CompareResult](t, "compare", "--json", "-m", lm, "--mmproj", mmproj, "--image-a", cat, "a cat", "a photo of a cat")
	ta, tb := doc.Prompts[0].Tokens, doc.Prompts[1].Tokens
	spans := analysis.ImageSpans(ta)
	if len(spans) != 2 || spans[0].Len != 64 || spans[1].Len != 64 || spans[0].Image != 1 || spans[1].Part != 2 {
		t.Fatalf("image spans of A: %+v", spans)
	}
	if len(analysis.ImageSpans(tb)) != 0 {
		t.Error("the text prompt has image positions")
	}
	for _, tok := range ta[spans[0].Start : spans[0].Start+64] {
		if tok.Kind != "image" || tok.ID >= 0 || tok.Image == nil || tok.Image.Source != cat {
			t.Fatalf("image position %+v", tok)
		}
	}
	if p := doc.Positions[0]; p.A != len(ta)-1 || p.B != len(tb)-1 {
		t.Errorf("positions %+v, want the last of each", doc.Positions)
	}
	if len(doc.Components) == 0 || doc.Components[0].L2 == 0 || len(doc.Lens) != 2 {
		t.Errorf("components %v, lens layers %d", doc.Components, len(doc.Lens))
	}

	// the table shows each run as one span
	out, _, err := run(t, false, "compare", "-m", lm, "--mmproj", mmproj, "--image-a", cat, "--no-lens", "a cat", "a photo of a cat")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "[image 1 part 1/2: 64 positions]") || !strings.Contains(out, "[image 1 part 2/2: 64 positions]") {
		t.Errorf("token table without image spans:\n%s", out)
	}

	// two images, position by position: every pair is an image position,
	// and the logit lens reads the last of them
	two := runJSON[analysis.CompareResult](t, "compare", "--json", "-m", lm, "--mmproj", mmproj, "--pos", "image", "--image-a", cat, "--image-b", dog, "x", "x")
	if len(two.Positions) != 128 {
		t.Fatalf("%d pairs, want 128 image positions", len(two.Positions))
	}
	for _, p := range two.Positions {
		if two.Prompts[0].Tokens[p.A].Image == nil || two.Prompts[1].Tokens[p.B].Image == nil {
			t.Fatalf("pair %+v is not two image positions", p)
		}
	}
	if two.Components[0].L2 == 0 {
		t.Error("two different images do not differ")
	}

	// the image mean against a word's vector
	mean := runJSON[analysis.CompareResult](t, "compare", "--json", "-m", lm, "--mmproj", mmproj, "--pos", "image-mean:last", "--image-a", cat, "x", "cat")
	if p := mean.Positions; len(p) != 1 || p[0].A != len(mean.Prompts[0].Tokens) {
		t.Errorf("image-mean positions %+v, want A at %d (one past the tokens)", p, len(mean.Prompts[0].Tokens))
	}
	found := false
	for _, w := range mean.Warnings {
		found = found || strings.Contains(w, "mean over its 128 image positions")
	}
	if !found {
		t.Errorf("no warning says what the mean position is: %q", mean.Warnings)
	}
}

func TestVisionCaptureAndErrors(t *testing.T) {
	lm, mmproj, cat, _ := visionFiles(t)
	dir := filepath.Join(t.TempDir(), "acts")
	out, _, err := run(t, false, "capture", "-m", lm, "--mmproj", mmproj, "--hooks", "resid_pre.0,resid_post.1", "-o", dir, "<image:"+cat+"> a cat")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "[image 1 part 1/2: 64 positions]") {
		t.Errorf("capture output without the image span:\n%s", out)
	}
	idx := readVisionIndex(t, dir)
	n := len(idx.Tokens)
	for _, f := range idx.Files {
		if f.Shape[0] != n {
			t.Errorf("%s has %d rows for %d positions", f.File, f.Shape[0], n)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"compare", "-m", lm, "--image-a", cat, "a", "b"}, "--mmproj"},
		{[]string{"compare", "-m", lm, "--mmproj", filepath.Join(t.TempDir(), "no.gguf"), "a", "b"}, "no such file"},
		{[]string{"compare", "-m", lm, "--mmproj", lm, "a", "b"}, "not clip"},
		{[]string{"compare", "-m", lm, "--mmproj", mmproj, "--pos", "image", "a", "b"}, "has no image"},
		{[]string{"compare", "-m", lm, "<image:" + cat + "> a", "b"}, "--mmproj"},
		{[]string{"synth", "--preset", "smolvlm-tiny", "-o", filepath.Join(t.TempDir(), "x.gguf")}, "--mmproj-out"},
	} {
		_, _, err := run(t, false, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error mentioning %q", tc.args, err, tc.want)
		}
	}
}

// readIndex reads DIR/index.json of a capture.
func readVisionIndex(t *testing.T, dir string) CaptureIndex {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx CaptureIndex
	if err := json.Unmarshal(data, &idx); err != nil {
		t.Fatal(err)
	}
	return idx
}
