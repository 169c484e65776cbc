package report

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// hostile is text a prompt may hold that would end or change the page if
// it were inlined as it is.
const hostile = "</script><script>window.pwned = 1</script><!-- </SCRIPT> <script> \u2028 & ]]> \"quoted\""

func sampleDoc() map[string]any {
	return map[string]any{
		"model": "/models/<b>x</b>.gguf",
		"summary": map[string]any{
			"text": "The prompts first differ at position 3 (" + hostile + ").",
		},
		"prompts": []any{
			map[string]any{"text": hostile, "tokens": []any{}},
			map[string]any{"text": "B", "tokens": []any{}},
		},
		"components": []any{map[string]any{"hook": "blocks.0.hook_attn_out", "rel_l2": 0.125}},
	}
}

// dataOf returns the text of the page's data element, as the browser's
// HTML parser sees it: everything up to the first "</script".
func dataOf(t *testing.T, page string) (kind, data string) {
	t.Helper()
	re := regexp.MustCompile(`<script id="lldiff-data" type="application/json" data-kind="([a-z]+)">`)
	m := re.FindStringSubmatchIndex(page)
	if m == nil {
		t.Fatalf("no data element in the page")
	}
	rest := page[m[1]:]
	end := strings.Index(strings.ToLower(rest), "</script")
	if end < 0 {
		t.Fatalf("the data element is not closed")
	}
	return page[m[2]:m[3]], rest[:end]
}

func TestWriteInlinesTheDocument(t *testing.T) {
	doc := sampleDoc()
	var b bytes.Buffer
	if err := Write(&b, KindCompare, doc); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	kind, data := dataOf(t, page)
	if kind != "compare" {
		t.Errorf("data-kind %q, want compare", kind)
	}
	// the element's text, parsed as JSON, is the document, hostile text
	// and all: nothing in it ended the element early
	var got, want any
	if err := json.Unmarshal([]byte(data), &got); err != nil {
		t.Fatalf("the data element is not the JSON document: %v\n%s", err, data)
	}
	raw, _ := json.Marshal(doc)
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("inlined document differs:\n got %v\nwant %v", got, want)
	}
	for _, bad := range []string{"<", ">", "\u2028"} {
		if strings.Contains(data, bad) {
			t.Errorf("the inlined JSON holds %q unescaped", bad)
		}
	}
	// three script elements (data, app.js, the boot line) and no other:
	// the hostile prompt opened none
	if n := strings.Count(strings.ToLower(page), "<script"); n != 3 {
		t.Errorf("%d <script tags in the page, want 3", n)
	}
	if n := strings.Count(strings.ToLower(page), "</script"); n != 3 {
		t.Errorf("%d </script tags in the page, want 3", n)
	}
	if strings.Contains(page, "<b>x</b>") {
		t.Error("the model name reached the page's title unescaped")
	}
}

func TestWriteIsSelfContained(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, KindPatch, sampleDoc()); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	js, _ := fs.ReadFile(Assets(), "app.js")
	css, _ := fs.ReadFile(Assets(), "app.css")
	if len(js) < 1000 || len(css) < 500 {
		t.Fatalf("assets too small: app.js %d bytes, app.css %d", len(js), len(css))
	}
	if !strings.Contains(page, string(js)) || !strings.Contains(page, string(css)) {
		t.Error("the page does not inline app.js and app.css as Assets serves them")
	}
	if !strings.Contains(string(js), "window.lldiff = {") || !strings.Contains(string(js), "render: render") {
		t.Error("app.js does not define window.lldiff.render")
	}
	// nothing that makes the browser fetch: no src= or href= attributes,
	// no CSS url() or @import, no link or iframe elements
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`(?i)\s(src|href|srcset|action)\s*=`),
		regexp.MustCompile(`(?i)(^|[^.\w])url\s*\(`),
		regexp.MustCompile(`(?i)@import`),
		regexp.MustCompile(`(?i)<(link|iframe|img|object|embed|base)\b`),
		regexp.MustCompile(`(?i)\b(fetch|XMLHttpRequest|WebSocket|EventSource|importScripts)\s*\(`),
	} {
		if m := re.FindString(page); m != "" {
			t.Errorf("the page can make a request: %q", m)
		}
	}
	if !strings.Contains(page, `http-equiv="Content-Security-Policy" content="default-src 'none'`) {
		t.Error("the page lacks its Content-Security-Policy")
	}
	// inlined code must not close its own element or open a comment
	for _, s := range []string{"</script", "<!--", "</style"} {
		if strings.Contains(strings.ToLower(string(js)), s) || strings.Contains(strings.ToLower(string(css)), s) {
			t.Errorf("app.js or app.css holds %q, which would break the inlined page", s)
		}
	}
}

func TestWriteRefusesUnknownKindAndBadDocument(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, Kind("params?"), sampleDoc()); err == nil || !strings.Contains(err.Error(), "unknown kind") {
		t.Errorf("unknown kind: err = %v", err)
	}
	if err := Write(&b, KindVec, map[string]any{"x": func() {}}); err == nil {
		t.Error("a document JSON cannot encode gave no error")
	}
	if b.Len() != 0 {
		t.Errorf("a failed Write wrote %d bytes", b.Len())
	}
}
