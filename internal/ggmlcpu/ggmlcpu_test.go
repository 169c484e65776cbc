package ggmlcpu

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// TestAMXFollowsTarget: built with -march=native (the Makefile's default),
// the AMX kernels are compiled exactly when this CPU has AMX-INT8 and
// AVX512-VNNI. Other builds (PORTABLE=1, cross targets) are not checked.
func TestAMXFollowsTarget(t *testing.T) {
	flags := os.Getenv("CGO_CXXFLAGS")
	if !strings.Contains(flags, "-march=native") {
		t.Skipf("CGO_CXXFLAGS=%q does not target this CPU (-march=native): nothing to compare with", flags)
	}
	info, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Skip("no /proc/cpuinfo:", err)
	}
	var cpu []string
	for _, line := range strings.Split(string(info), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "flags" {
			cpu = strings.Fields(v)
			break
		}
	}
	want := slices.Contains(cpu, "amx_int8") && slices.Contains(cpu, "avx512_vnni")
	if got := AMX(); got != want {
		t.Errorf("AMX compiled = %v; this CPU has amx_int8 and avx512_vnni = %v (built with %s)", got, want, flags)
	}
}
