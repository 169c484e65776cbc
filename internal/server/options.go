package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/lldiff/lldiff/analysis"
	"github.com/lldiff/lldiff/contrast"
	"github.com/lldiff/lldiff/diff"
	"github.com/lldiff/lldiff/models"
	"github.com/lldiff/lldiff/report"
)

// A request's options are a JSON object whose keys are the command's flag
// names ("top-k", "lens-norm"), with the flags' defaults. Options that name
// files, and the model's own flags, are refused by name (docs/serve.md).

// fileOptions are flags that name a file: the server never reads or writes
// one for a client.
var fileOptions = map[string]string{
	"model": "the model", "m": "the model",
	"a-file": "prompt A", "b-file": "prompt B", "clean-file": "the clean prompt", "corrupt-file": "the corrupt prompt",
	"prompt-file": "the prompt", "pairs": "the pairs", "plot": "a plot", "html": "an HTML report",
	"save-vectors": "vectors", "export-cvec": "a control vector", "json": "the output",
}

// modelOptions are the flags of the loaded model and its contexts: serve's
// command line sets them for every request.
var modelOptions = []string{"n-gpu-layers", "ngl", "g", "threads", "t", "ctx-size", "c", "batch-size", "b",
	"ubatch-size", "u", "kv-type", "no-mmap", "mmap", "no-repack"}

// tokenizeFields are the tokenizer flags every request may give.
type tokenizeFields struct {
	BOS     string `json:"bos"`
	Special bool   `json:"special"`
}

func (t tokenizeFields) options() (models.TokenizeOptions, error) {
	o := models.TokenizeOptions{ParseSpecial: t.Special}
	switch t.BOS {
	case "", "auto":
	case "yes":
		o.BOS = models.BOSYes
	case "no":
		o.BOS = models.BOSNo
	default:
		return o, fmt.Errorf(`"bos": %q: use auto, yes or no`, t.BOS)
	}
	return o, nil
}

// stringList is a repeatable flag: a list of strings, or one string.
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*l = []string{s}
		return nil
	}
	var ss []string
	if err := json.Unmarshal(b, &ss); err != nil {
		return errors.New("want a string or a list of strings")
	}
	*l = ss
	return nil
}

// decodeOptions decodes body, a JSON object, into dst (which holds the
// defaults). Every key must be a json tag of dst: a key naming a file or a
// model flag is refused with its own reason, any other with the list of
// known keys. It returns the keys given.
func decodeOptions(body []byte, dst any, command string) (map[string]bool, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil || raw == nil {
		return nil, fmt.Errorf("the body must be one JSON object of %s's options, such as {%s}", command, exampleOptions[command])
	}
	known := jsonKeys(dst)
	given := map[string]bool{}
	var keys []string
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		given[k] = true
		if slices.Contains(known, k) {
			continue
		}
		if what, ok := fileOptions[k]; ok {
			return nil, fmt.Errorf("%q names a file (%s): the server never reads or writes files for a request; the model is the one serve was started with, prompts are given as text, and the result is the answer", k, what)
		}
		if slices.Contains(modelOptions, k) {
			return nil, fmt.Errorf("%q is a setting of the loaded model: give it when starting the server (lldiff serve -m MODEL --%s ...), not per request", k, k)
		}
		return nil, fmt.Errorf("unknown option %q for %s; the options are: %s", k, command, strings.Join(known, ", "))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("%q: a %s is not a valid value here (want %s)", te.Field, te.Value, jsonTypeName(te.Type.Kind().String()))
		}
		return nil, fmt.Errorf("%q: %v", command, err)
	}
	return given, nil
}

var exampleOptions = map[string]string{
	"compare":  `"a": "prompt A", "b": "prompt B"`,
	"patch":    `"clean": "...", "corrupt": "...", "answer": " she"`,
	"contrast": `"a": ["prompt", ...], "b": ["prompt", ...]`,
}

func jsonTypeName(kind string) string {
	switch kind {
	case "int", "int64", "float64":
		return "a number"
	case "bool":
		return "true or false"
	case "string":
		return "a string"
	case "slice":
		return "a list"
	}
	return kind
}

// jsonKeys returns the json tags of the struct v points to, its embedded
// structs' included.
func jsonKeys(v any) []string {
	var keys []string
	var walk func(rt reflect.Type)
	walk = func(rt reflect.Type) {
		for i := range rt.NumField() {
			f := rt.Field(i)
			if f.Anonymous {
				walk(f.Type)
				continue
			}
			if tag, _, _ := strings.Cut(f.Tag.Get("json"), ","); tag != "" && tag != "-" {
				keys = append(keys, tag)
			}
		}
	}
	walk(reflect.TypeOf(v).Elem())
	sort.Strings(keys)
	return keys
}

// checkText refuses a prompt or answer longer than Limits.MaxPrompt.
func (s *Server) checkText(field, text string) error {
	if len(text) > s.cfg.Limits.MaxPrompt {
		return fmt.Errorf("%q is %d bytes long, more than the server's limit of %d (--max-prompt)", field, len(text), s.cfg.Limits.MaxPrompt)
	}
	return nil
}

// checkPos refuses a --pos that would silently mean something else, as the
// commands do.
func checkPos(pos string) error {
	if strings.TrimSpace(pos) == "" {
		return errors.New(`"pos" is empty: give last, all, or positions such as -1 or 0,3`)
	}
	return analysis.CheckPosSpec(pos)
}

// compareRequest holds the options of POST /api/compare: `lldiff compare`'s
// flags that change its JSON document, with their defaults.
type compareRequest struct {
	A        string     `json:"a"`
	B        string     `json:"b"`
	Pos      string     `json:"pos"`
	Kinds    string     `json:"kinds"`
	Sort     string     `json:"sort"`
	TopK     int        `json:"top-k"`
	LensK    int        `json:"lens-k"`
	LensNorm string     `json:"lens-norm"`
	Neurons  int        `json:"neurons"`
	Answer   stringList `json:"answer"`
	tokenizeFields
}

func parseCompare(s *Server, body []byte) (*job, error) {
	q := compareRequest{Pos: "last", Kinds: "resid_post,resid_mid,attn_out,mlp_out", Sort: "rel",
		TopK: 5, LensK: 5, LensNorm: "norm", Neurons: 10}
	given, err := decodeOptions(body, &q, "compare")
	if err != nil {
		return nil, err
	}
	if q.A == "" || q.B == "" {
		return nil, errors.New(`compare needs two non-empty prompts: {"a": "prompt A", "b": "prompt B"}`)
	}
	texts := append([]string{q.A, q.B}, q.Answer...)
	for i, t := range texts {
		field := "answer"
		if i < 2 {
			field = []string{"a", "b"}[i]
		}
		if err := s.checkText(field, t); err != nil {
			return nil, err
		}
	}
	if err := checkPos(q.Pos); err != nil {
		return nil, err
	}
	if q.TopK < 1 || q.LensK < 1 || q.Neurons < 1 {
		return nil, errors.New(`"top-k", "lens-k" and "neurons" take numbers >= 1`)
	}
	lensMode, err := models.ParseLensMode(q.LensNorm)
	if err != nil {
		return nil, err
	}
	if _, err := diff.Rank(nil, q.Sort); err != nil {
		return nil, err
	}
	to, err := q.options()
	if err != nil {
		return nil, err
	}
	kindsSet := given["kinds"]
	return &job{kind: report.KindCompare, prompts: texts, tok: to, run: func(e models.Engine, _ analysis.Progress) (any, error) {
		// as compareRun: a kind the architecture lacks is an error when
		// asked for, and left out with a warning from the default list
		nl := e.ModelInfo().NLayer
		var kinds []models.Kind
		var skipped []string
		for _, k := range strings.Split(q.Kinds, ",") {
			hs, err := models.ParseHook(strings.TrimSpace(k), nl)
			if err != nil {
				return nil, &analysis.InputError{Err: err}
			}
			if !hs[0].Kind.PerLayer() || len(hs) != nl {
				return nil, &analysis.InputError{Err: fmt.Errorf(`"kinds" takes per-layer kinds without a layer (resid_post, resid_mid, attn_out, mlp_out, resid_pre, z), got %q`, k)}
			}
			if err := e.HookTable().Check(hs[0].Kind); err != nil {
				if kindsSet {
					return nil, &analysis.InputError{Err: err}
				}
				skipped = append(skipped, err.Error()+"; left out of the ranking")
				continue
			}
			kinds = append(kinds, hs[0].Kind)
		}
		doc, err := analysis.Compare(e, analysis.CompareOptions{
			Model: s.cfg.Model, A: q.A, B: q.B, Tokenize: to,
			Positions: q.Pos, Kinds: kinds, Sort: q.Sort,
			TopK: q.TopK, LensK: q.LensK, Neurons: q.Neurons, Lens: lensMode, Answers: q.Answer,
		})
		if err != nil {
			return nil, err
		}
		doc.Warnings = append(skipped, doc.Warnings...)
		return doc, nil
	}}, nil
}

// patchRequest holds the options of POST /api/patch.
type patchRequest struct {
	Clean       string `json:"clean"`
	Corrupt     string `json:"corrupt"`
	Answer      string `json:"answer"`
	Wrong       string `json:"wrong"`
	Kinds       string `json:"kinds"`
	Layers      string `json:"layers"`
	Pos         string `json:"pos"`
	Top         int    `json:"top"`
	FromCompare bool   `json:"from-compare"`
	Parallel    int    `json:"parallel"`
	Exact       bool   `json:"exact"`
	tokenizeFields
}

// patchKinds are the kinds patch accepts (cli/patch.go).
var patchKinds = []models.Kind{models.ResidPre, models.Z, models.AttnOut, models.ResidMid, models.MLPOut, models.ResidPost}

func parsePatch(s *Server, body []byte) (*job, error) {
	q := patchRequest{Kinds: "resid_pre,attn_out,mlp_out,resid_post", Layers: "all", Pos: "each"}
	given, err := decodeOptions(body, &q, "patch")
	if err != nil {
		return nil, err
	}
	switch {
	case q.Clean == "" || q.Corrupt == "":
		return nil, errors.New(`the clean and the corrupt prompt must both have text: {"clean": "...", "corrupt": "...", "answer": " X"}`)
	case q.Answer == "":
		return nil, errors.New(`no answer: give "answer": " X", the token the clean prompt should produce (mind the leading space)`)
	case q.Wrong != "" && q.Wrong == q.Answer:
		return nil, fmt.Errorf(`"answer" and "wrong" are both %q: the logit difference would be 0`, q.Answer)
	case given["top"] && q.Top == 0:
		return nil, errors.New(`"top": 0 would patch nothing: give a number >= 1, or leave it out for 10`)
	case q.Top < 0 || q.Parallel < 0:
		return nil, errors.New(`"top" and "parallel" take numbers >= 0`)
	case q.Top > 0 && !q.FromCompare:
		return nil, errors.New(`"top" picks components from compare's ranking: add "from-compare": true`)
	case q.Parallel > s.cfg.Limits.MaxParallel:
		return nil, fmt.Errorf(`"parallel": %d: at most %d sequences are decoded together`, q.Parallel, s.cfg.Limits.MaxParallel)
	}
	if q.FromCompare && q.Top == 0 {
		q.Top = 10
	}
	for field, t := range map[string]string{"clean": q.Clean, "corrupt": q.Corrupt, "answer": q.Answer, "wrong": q.Wrong} {
		if err := s.checkText(field, t); err != nil {
			return nil, err
		}
	}
	var kinds []models.Kind
	for _, part := range strings.Split(q.Kinds, ",") {
		k := models.Kind(strings.TrimSpace(part))
		if !slices.Contains(patchKinds, k) {
			return nil, fmt.Errorf(`"kinds": %q is not a component kind that can be patched (kinds: resid_pre, z, attn_out, resid_mid, mlp_out, resid_post; give kinds without layers and choose layers with "layers")`, part)
		}
		if !slices.Contains(kinds, k) {
			kinds = append(kinds, k)
		}
	}
	layerSpec, err := diff.ParseLayers("layers", q.Layers)
	if err != nil {
		return nil, err
	}
	if err := checkPos(q.Pos); err != nil {
		return nil, err
	}
	to, err := q.options()
	if err != nil {
		return nil, err
	}
	prompts := []string{q.Clean, q.Corrupt, q.Answer}
	if q.Wrong != "" {
		prompts = append(prompts, q.Wrong)
	}
	return &job{kind: report.KindPatch, prompts: prompts, tok: to,
		run: func(e models.Engine, p analysis.Progress) (any, error) {
			for _, k := range kinds {
				if err := e.HookTable().Check(k); err != nil {
					return nil, &analysis.InputError{Err: err}
				}
			}
			n := e.ModelInfo().NLayer
			layers, err := layerSpec.Resolve(n)
			if err != nil {
				return nil, &analysis.InputError{Err: err}
			}
			if len(layers) == 0 {
				return nil, &analysis.InputError{Err: fmt.Errorf(`"layers": %q: no layer of the model's %d (0..%d) is in the range`, q.Layers, n, n-1)}
			}
			po := analysis.PatchOptions{
				Model: s.cfg.Model, Clean: q.Clean, Corrupt: q.Corrupt, Tokenize: to,
				Answer: q.Answer, Wrong: q.Wrong, Kinds: kinds, Layers: layers, Positions: q.Pos,
				Exact: q.Exact, Parallel: q.Parallel, KVBytes: s.cfg.KVBytes, Progress: p,
			}
			if q.FromCompare {
				po.Top = q.Top
			}
			return analysis.Patch(e, po)
		}}, nil
}

// contrastRequest holds the options of POST /api/contrast. The prompt sets
// are given as lists of text ("a", "b") or pairs, where the command reads
// files.
type contrastRequest struct {
	A        []string       `json:"a"`
	B        []string       `json:"b"`
	Pairs    []contrastPair `json:"pairs"`
	Paired   bool           `json:"paired"`
	Pos      string         `json:"pos"`
	Kinds    string         `json:"kinds"`
	Parallel int            `json:"parallel"`
	LensK    int            `json:"lens-k"`
	LensNorm string         `json:"lens-norm"`
	tokenizeFields
}

type contrastPair struct {
	A *string `json:"a"`
	B *string `json:"b"`
}

func parseContrast(s *Server, body []byte) (*job, error) {
	q := contrastRequest{Pos: "last", Kinds: "resid_post,attn_out,mlp_out", Parallel: 8, LensK: 5, LensNorm: "gamma"}
	var raw map[string]json.RawMessage
	if json.Unmarshal(body, &raw) == nil {
		for _, k := range []string{"a", "b"} {
			if v, ok := raw[k]; ok && len(v) > 0 && v[0] == '"' {
				return nil, fmt.Errorf(`%q takes the prompts themselves, a list of strings such as ["prompt 1", "prompt 2"]: the server reads no files`, k)
			}
		}
	}
	if _, err := decodeOptions(body, &q, "contrast"); err != nil {
		return nil, err
	}
	ds := &contrast.Dataset{Paired: q.Paired}
	var sources [2]string
	switch {
	case len(q.Pairs) > 0 && (len(q.A) > 0 || len(q.B) > 0):
		return nil, errors.New(`give either "pairs" or "a" and "b", not both`)
	case len(q.Pairs) > 0:
		ds.Paired = true
		for i, p := range q.Pairs {
			if p.A == nil || p.B == nil {
				return nil, fmt.Errorf(`pairs[%d]: a pair needs both an "a" and a "b" field`, i)
			}
			if strings.TrimSpace(*p.A) == "" || strings.TrimSpace(*p.B) == "" {
				return nil, fmt.Errorf(`pairs[%d]: "a" or "b" is empty`, i)
			}
			src := fmt.Sprintf("pairs[%d]", i)
			ds.A = append(ds.A, contrast.Prompt{Text: *p.A, Source: src})
			ds.B = append(ds.B, contrast.Prompt{Text: *p.B, Source: src})
		}
		sources = [2]string{"pairs (a)", "pairs (b)"}
	case len(q.A) == 0 || len(q.B) == 0:
		return nil, errors.New(`no prompts: give "a" and "b", two lists of prompts, or "pairs": [{"a": "...", "b": "..."}, ...]`)
	default:
		for side, set := range [][]string{q.A, q.B} {
			name := []string{"a", "b"}[side]
			for i, t := range set {
				if strings.TrimSpace(t) == "" {
					return nil, fmt.Errorf("%s[%d] is empty: every prompt needs text", name, i)
				}
				p := contrast.Prompt{Text: t, Source: fmt.Sprintf("%s[%d]", name, i)}
				if side == 0 {
					ds.A = append(ds.A, p)
				} else {
					ds.B = append(ds.B, p)
				}
			}
		}
		if q.Paired && len(ds.A) != len(ds.B) {
			return nil, fmt.Errorf(`"paired" sets need as many prompts in "a" as in "b", but a has %d and b has %d`, len(ds.A), len(ds.B))
		}
		sources = [2]string{"a", "b"}
	}
	if n := len(ds.A) + len(ds.B); n > s.cfg.Limits.MaxPrompts {
		return nil, fmt.Errorf("%d prompts: the server takes at most %d per request (--max-prompts)", n, s.cfg.Limits.MaxPrompts)
	}
	var texts []string
	for _, set := range [][]contrast.Prompt{ds.A, ds.B} {
		for _, p := range set {
			if err := s.checkText(p.Source, p.Text); err != nil {
				return nil, err
			}
			texts = append(texts, p.Text)
		}
	}
	if q.Parallel < 1 || q.LensK < 0 {
		return nil, errors.New(`"parallel" takes numbers >= 1, "lens-k" >= 0`)
	}
	if q.Parallel > s.cfg.Limits.MaxParallel {
		return nil, fmt.Errorf(`"parallel": %d: at most %d sequences are decoded together`, q.Parallel, s.cfg.Limits.MaxParallel)
	}
	lensMode, err := models.ParseLensMode(q.LensNorm)
	if err != nil {
		return nil, err
	}
	if err := checkPos(q.Pos); err != nil {
		return nil, err
	}
	rows, err := analysis.ParseRowSpec(q.Pos)
	if err != nil {
		return nil, err
	}
	to, err := q.options()
	if err != nil {
		return nil, err
	}
	return &job{kind: report.KindContrast, prompts: texts, tok: to, run: func(e models.Engine, p analysis.Progress) (any, error) {
		nl := e.ModelInfo().NLayer
		var kinds []models.Kind
		for _, k := range strings.Split(q.Kinds, ",") {
			k = strings.TrimSpace(k)
			if k == "" {
				continue
			}
			hs, err := models.ParseHook(k, nl)
			if err != nil {
				return nil, &analysis.InputError{Err: err}
			}
			if !hs[0].Kind.PerLayer() || len(hs) != nl {
				return nil, &analysis.InputError{Err: fmt.Errorf(`"kinds" takes per-layer kinds without a layer (resid_post, resid_mid, resid_pre, attn_out, mlp_out, z), got %q`, k)}
			}
			if err := e.HookTable().Check(hs[0].Kind); err != nil {
				return nil, &analysis.InputError{Err: err}
			}
			if !slices.Contains(kinds, hs[0].Kind) {
				kinds = append(kinds, hs[0].Kind)
			}
		}
		if len(kinds) == 0 {
			return nil, &analysis.InputError{Err: errors.New(`"kinds" is empty`)}
		}
		return analysis.Contrast(e, analysis.ContrastOptions{
			Model: s.cfg.Model, Dataset: ds, Sources: sources, Positions: rows, Spec: q.Pos,
			Tokenize: to, Kinds: kinds, Parallel: q.Parallel, NCtx: s.cfg.NCtx,
			LensK: q.LensK, Lens: lensMode, Progress: p,
		})
	}}, nil
}
