package cli

import (
	"fmt"
	"strings"

	"github.com/lldiff/lldiff/models"
)

// synthVisionRun writes the smolvlm-tiny pair: a llama language model
// (-o) and the vision projector that goes with it (--mmproj-out).
func synthVisionRun(opts *SynthOptions) error {
	if opts.Preset != models.SmolVLMTinyPreset {
		return usageErr("--mmproj-out writes the projector of a vision pair: use it with --preset %s", models.SmolVLMTinyPreset)
	}
	if opts.MMProjOut == "" {
		return usageErr("--preset %s writes two files: pass --mmproj-out MMPROJ.gguf for the projector as well as -o for the language model", models.SmolVLMTinyPreset)
	}
	lm, v := models.SmolVLMTiny()
	for _, o := range []struct {
		v   int
		dst *int
	}{{opts.Layers, &lm.NLayer}, {opts.DModel, &lm.DModel}, {opts.Heads, &lm.NHead}, {opts.KVHeads, &lm.NHeadKV}, {opts.DFF, &lm.DFF}, {opts.Ctx, &lm.NCtx}} {
		if o.v > 0 {
			*o.dst = o.v
		}
	}
	if opts.Heads > 0 && opts.KVHeads == 0 {
		lm.NHeadKV = lm.NHead
	}
	lm.Seed, lm.Overwrite, lm.VocabPath = opts.Seed, opts.Force, opts.Vocab
	lm.Untied = opts.Untied && !opts.Tied
	if opts.Type != "" {
		t, err := models.ParseGGMLType(strings.ToUpper(opts.Type))
		if err != nil || (t != models.F32 && t != models.F16 && t != models.Q8_0 && t != models.Q4_0) {
			return usageErr("--type %q: the %s language model is written as F32, F16, Q8_0 or Q4_0", opts.Type, models.SmolVLMTinyPreset)
		}
		lm.Type = t
	}
	for _, f := range []struct{ path, flag string }{{opts.Out, "-o"}, {opts.MMProjOut, "--mmproj-out"}} {
		if err := checkOutFile(f.path, f.flag, opts.Force); err != nil {
			return err
		}
	}
	if err := models.WriteSynthVision(opts.Out, opts.MMProjOut, lm, v); err != nil {
		return err
	}
	fmt.Fprintf(opts.IO.Out, "wrote %s: llama, %d layers, d_model %d, %d heads (%d KV), d_ff %d, %s\n",
		opts.Out, lm.NLayer, lm.DModel, lm.NHead, lm.NHeadKV, lm.DFF, lm.Type)
	fmt.Fprintf(opts.IO.Out, "wrote %s: idefics3 projector (SmolVLM's), %d×%d tiles of %d×%d patches, vision d_model %d, %d layers: %d positions per tile\n",
		opts.MMProjOut, v.ImageSize, v.ImageSize, v.PatchSize, v.PatchSize, v.DModel, v.NLayer, v.ImageTokens())
	return nil
}
