package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestServeListen checks --listen: loopback addresses are served as they
// are, any other address needs --allow-remote and then gets a warning.
func TestServeListen(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantErr string
		warn    bool
	}{
		{nil, "", false}, // 127.0.0.1:8080
		{[]string{"--listen", "localhost:0"}, "", false},
		{[]string{"--listen", "[::1]:9000"}, "", false},
		{[]string{"--listen", "127.0.0.5:80"}, "", false},
		{[]string{"--listen", "0.0.0.0:8080"}, "--allow-remote", false},
		{[]string{"--listen", ":8080"}, "every interface", false},
		{[]string{"--listen", "192.168.1.5:8080"}, "not only this machine", false},
		{[]string{"--listen", "0.0.0.0:8080", "--allow-remote"}, "", true},
		{[]string{"--listen", "8080"}, "give HOST:PORT", false},
		{[]string{"--listen", "127.0.0.1:http-ish"}, "is not a port", false},
		{[]string{"--max-run", "0s"}, "--max-run", false},
		{[]string{"--queue", "-1"}, "--queue", false},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var errOut bytes.Buffer
			io := &IOStreams{In: strings.NewReader(""), Out: &bytes.Buffer{}, ErrOut: &errOut}
			var got *ServeOptions
			cmd := newCmdServe(io, func(o *ServeOptions) error { got = o; return nil })
			cmd.SetArgs(append([]string{"-m", "model.gguf"}, tc.args...))
			cmd.SetOut(&bytes.Buffer{})
			cmd.SetErr(&bytes.Buffer{})
			err := cmd.Execute()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
				}
				if got != nil {
					t.Error("the server would have started")
				}
				return
			}
			if err != nil || got == nil {
				t.Fatalf("error %v", err)
			}
			if warned := strings.Contains(errOut.String(), "warning: listening on"); warned != tc.warn {
				t.Errorf("warning printed: %v, want %v (%q)", warned, tc.warn, errOut.String())
			}
		})
	}
}

// TestServeLimitFlags checks that the limit flags reach the server's
// limits, and that their defaults are the server's.
func TestServeLimitFlags(t *testing.T) {
	io := &IOStreams{In: strings.NewReader(""), Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}}
	var got *ServeOptions
	cmd := newCmdServe(io, func(o *ServeOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"-m", "m.gguf", "--max-body", "1000", "--max-prompt", "20", "--max-tokens", "30", "--max-prompts", "4",
		"--max-run", "7s", "--queue", "0", "--grace", "2s", "--allow-host", "box.lan", "--allow-host", "box"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	l := got.Limits
	if l.MaxBody != 1000 || l.MaxPrompt != 20 || l.MaxTokens != 30 || l.MaxPrompts != 4 || l.MaxRun != 7*time.Second || l.Queue != 0 ||
		got.Grace != 2*time.Second || strings.Join(got.AllowHosts, ",") != "box.lan,box" {
		t.Errorf("options %+v", got)
	}
}
