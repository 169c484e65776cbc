package llamacpp

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
)

// TestCancelBeforeDecode checks that a context whose Cancel is done starts
// no decode and says why.
func TestCancelBeforeDecode(t *testing.T) {
	m := loadShared(t, testmodels.Stories260K)
	ctx, cancel := context.WithCancel(context.Background())
	c, err := m.NewContext(ContextParams{NCtx: 256, Cancel: ctx})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seq := []int32{1, 400, 401, 402}
	if _, err := c.Run([][]int32{seq}, RunOptions{}); err != nil {
		t.Fatalf("before the cancel: %v", err)
	}
	before := c.decodes
	cancel()
	_, err = c.Run([][]int32{seq}, RunOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("after the cancel Run returned %v, want an error wrapping context.Canceled", err)
	}
	if c.decodes != before {
		t.Errorf("%d llama_decode calls after the cancel, want none", c.decodes-before)
	}
}

// TestCancelBetweenVariants cancels a patch from its progress callback
// after the first decode and checks that no further decode runs.
func TestCancelBetweenVariants(t *testing.T) {
	m := loadShared(t, testmodels.Stories260K)
	ctx, cancel := context.WithCancel(context.Background())
	c, err := m.NewContext(ContextParams{NCtx: 256, NSeqMax: 2, Cancel: ctx})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	base := []int32{1, 400, 401, 402, 403, 404}
	var variants [][]Patch
	for range 20 {
		variants = append(variants, nil)
	}
	calls := 0
	_, err = c.Patch(base, variants, PatchOptions{Plain: true, Progress: func(done, total int) {
		calls++
		cancel()
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Patch returned %v, want an error wrapping context.Canceled", err)
	}
	if calls != 1 {
		t.Errorf("%d variants decoded after the cancel, want none", calls-1)
	}
}

// TestAbortFlagStopsDecode raises the flag llama.cpp's abort callback reads
// while the context's Cancel is not done: llama_decode then reports that
// it was aborted (status 2), which shows the callback is wired to the flag
// and stops a decode inside llama.cpp, not only between calls.
func TestAbortFlagStopsDecode(t *testing.T) {
	m := loadShared(t, testmodels.Stories260K)
	c, err := m.NewContext(ContextParams{NCtx: 256, Cancel: context.Background()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seq := []int32{1, 400, 401, 402}
	if _, err := c.Run([][]int32{seq}, RunOptions{}); err != nil {
		t.Fatalf("before the flag: %v", err)
	}
	c.raiseAbort()
	_, err = c.Run([][]int32{seq}, RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "status 2") {
		t.Fatalf("with the flag raised Run returned %v, want llama_decode's status 2 (aborted)", err)
	}
}
