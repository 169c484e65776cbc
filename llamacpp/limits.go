package llamacpp

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/lldiff/lldiff/models"
)

// CPUs returns the number of CPUs this process may run on.
func CPUs() int { return runtime.NumCPU() }

// ClampThreads returns the thread count a context uses for n: n, or the
// number of CPUs when n is larger (clamped is then true). ggml's threads
// spin at every barrier of a graph: more threads than CPUs only wait for
// one another, and -t 512 on 2 CPUs takes minutes where -t 2 takes a
// second.
func ClampThreads(n int) (threads int, clamped bool) {
	if c := CPUs(); n > c {
		return c, true
	}
	return n, false
}

// KVBytes returns the size of the KV cache of a context of nCtx tokens on
// a model of shape info: a key and a value of n_head_kv·d_head values per
// layer and token, of 4 bytes (f32) or 2 (f16). llama.cpp clears the whole
// cache when it creates a context, so all of it is memory in use at once.
func KVBytes(info *models.Info, nCtx int, kvType string) float64 {
	bytes := 4.0
	if strings.EqualFold(kvType, "f16") {
		bytes = 2
	}
	return 2 * float64(info.NLayer) * float64(nCtx) * float64(info.NHeadKV) * float64(info.DHead) * bytes
}

// memAvailable returns the memory the system can give without swapping,
// and whether it is known (tests replace it).
var memAvailable = availableMemory

// availableMemory reads MemAvailable from /proc/meminfo (Linux).
func availableMemory() (uint64, bool) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:")
		if !ok {
			continue
		}
		fs := strings.Fields(rest)
		if len(fs) < 1 {
			return 0, false
		}
		kb, err := strconv.ParseUint(fs[0], 10, 64)
		if err != nil {
			return 0, false
		}
		return kb << 10, true
	}
	return 0, false
}

// checkMemory refuses a context whose KV cache would not fit the memory
// the system has available: llama.cpp would otherwise fill the memory
// (and the swap) clearing it before anything failed. A model with layers
// on a GPU keeps their cache there, where llama.cpp's own allocation
// fails cleanly; it is not checked here.
func (m *Model) checkMemory(p ContextParams) error {
	if m.gpuLayers > 0 || m.Info == nil {
		return nil
	}
	avail, ok := memAvailable()
	if !ok {
		return nil
	}
	need := KVBytes(m.Info, p.NCtx, p.KVType)
	if need <= float64(avail) {
		return nil
	}
	fit := int(float64(avail) / KVBytes(m.Info, 1, p.KVType))
	f16 := ""
	if p.KVType == "f32" {
		f16 = "; --kv-type f16 halves it"
	}
	return fmt.Errorf("a context of %d tokens needs a KV cache of %s (%d layers × 2 × %d values × %d tokens, %s), but this machine has %s of memory available: give a smaller context (-c; at most about %d tokens fit), or leave -c out to size it to the prompts%s",
		p.NCtx, humanBytes(need), m.Info.NLayer, m.Info.NHeadKV*m.Info.DHead, p.NCtx, p.KVType, humanBytes(float64(avail)), fit, f16)
}

func humanBytes(b float64) string {
	switch {
	case b >= 1<<40:
		return fmt.Sprintf("%.1f TiB", b/(1<<40))
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	}
	return fmt.Sprintf("%.0f KiB", b/(1<<10))
}
