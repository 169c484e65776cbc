package cli

import (
	"strings"
	"testing"

	"github.com/lldiff/lldiff/internal/testmodels"
)

func TestMmapFlagsContradict(t *testing.T) {
	p := testmodels.Path(t, testmodels.Stories260K)
	_, _, err := run(t, false, "compare", "-m", p, "--mmap", "--no-mmap", "a", "b")
	if err == nil || ExitCode(err) != 2 || !strings.Contains(err.Error(), "--mmap and --no-mmap") {
		t.Errorf("--mmap --no-mmap: %v (exit %d), want a usage error naming both", err, ExitCode(err))
	}
	if _, _, err := run(t, false, "compare", "-m", p, "--no-repack", "--mmap", "-t1", goldenA, goldenB); err != nil {
		t.Errorf("--no-repack --mmap: %v", err)
	}
}
