package cli

import (
	"github.com/spf13/cobra"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/llamacpp"
)

// visionFlags are --mmproj, which lets prompts hold images
// (docs/vision.md).
type visionFlags struct {
	MMProj string
}

func (v *visionFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&v.MMProj, "mmproj", "", "vision projector GGUF (mmproj) of the model: prompts may then hold images as <image:PATH>")
}

// attach loads the projector into m when --mmproj was given. The returned
// function frees it; call it before m is closed (defer it after m.Close's
// defer).
func (v *visionFlags) attach(m *llamacpp.Model, threads int) (func(), error) {
	if v.MMProj == "" {
		return func() {}, nil
	}
	vis, err := m.LoadVision(v.MMProj, llamacpp.VisionParams{Threads: threads})
	if err != nil {
		return nil, err
	}
	return func() { vis.Close() }, nil
}

// withImage puts the marker of the image at path in front of prompt: the
// place a chat template's image usually takes, before the text about it.
// An empty path leaves the prompt as it is.
func withImage(prompt, path, flag string, v visionFlags) (string, error) {
	if path == "" {
		return prompt, nil
	}
	if v.MMProj == "" {
		return "", usageErr("%s needs the model's vision projector: pass --mmproj FILE", flag)
	}
	m, err := llamacpp.ImageMarker(path)
	if err != nil {
		return "", &UsageError{Err: err}
	}
	return m + prompt, nil
}

// tokenCell is token i of toks in a token table: its piece, or for the
// first position of an image span the span ("[image 1: 64 positions]"); a
// later position of a span shows as "…".
func tokenCell(toks []analysis.Token, i int) string {
	t := toks[i]
	if t.Image == nil {
		return t.Piece
	}
	if t.Image.Row > 0 {
		return "…"
	}
	for _, s := range analysis.ImageSpans(toks) {
		if s.Start == i {
			return s.Label()
		}
	}
	return t.Piece
}
