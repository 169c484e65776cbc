// Package testexec runs the current test binary again as a child process.
// Under qemu-user (make test-arm64) the host cannot exec a foreign binary
// directly, so the child goes through the emulator named by
// $LLDIFF_TEST_EXEC (the Makefile sets it to qemu-aarch64).
package testexec

import (
	"os"
	"os/exec"
)

// Self returns a command that runs this test binary with args.
func Self(args ...string) *exec.Cmd {
	if wrap := os.Getenv("LLDIFF_TEST_EXEC"); wrap != "" {
		return exec.Command(wrap, append([]string{os.Args[0]}, args...)...)
	}
	return exec.Command(os.Args[0], args...)
}
