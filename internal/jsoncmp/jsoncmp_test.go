package jsoncmp

import (
	"strings"
	"testing"
)

func TestCompare(t *testing.T) {
	a := `{"x": 1.0, "s": "a", "arr": [{"v": 2, "t": 9}], "time": 3, "n": null}`
	cases := []struct {
		b    string
		want []string
	}{
		{`{"x": 1.0000001, "s": "a", "arr": [{"v": 2, "t": 1}], "time": 4, "n": null}`, nil},
		{`{"x": 1.1, "s": "a", "arr": [{"v": 2}], "time": 3, "n": null}`, []string{"x: 1.0 vs 1.1"}},
		{`{"x": 1, "s": "b", "arr": [{"v": 2, "t": 9}, {}], "time": 3, "n": 0}`, []string{"arr: 1 elements vs 2", "n: null vs 0", `s: "a" vs "b"`}},
		{`{"x": 1, "s": "a", "arr": [{"v": 2, "t": 9}], "time": 3, "n": null, "new": true}`, []string{"new: only in the second document"}},
	}
	for _, c := range cases {
		got, err := Compare([]byte(a), []byte(c.b), Options{Rel: 1e-6, Skip: []string{"time", "arr[].t"}}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%s: got %q, want %q", c.b, got, c.want)
		}
	}
}
