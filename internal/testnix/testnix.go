// Package testnix is the one place tests ask for a real Nix installation.
//
// Tests that need Nix call Require: outside CI a machine without Nix skips
// them, but in CI (CI=true) a missing Nix is a failure, never a silent skip.
package testnix

import (
	"os"
	"os/exec"
	"testing"
)

// Tools are the Nix programs the test suite drives.
var Tools = []string{"nix-build", "nix-instantiate", "nix-store", "nix-daemon", "nix"}

// Require fails (in CI) or skips (elsewhere) the test when a Nix tool is missing.
func Require(t testing.TB) {
	t.Helper()
	for _, tool := range Tools {
		if _, err := exec.LookPath(tool); err != nil {
			if InCI() {
				t.Fatalf("%s not found on PATH: CI must install Nix (apt-get install -y nix-bin): %v", tool, err)
			}
			t.Skipf("%s not found on PATH; install Nix to run this test", tool)
		}
	}
}

// InCI reports whether the tests run in CI, where nothing may be skipped for
// want of a tool.
func InCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "0" && v != "false"
}

// RequireRoot fails (in CI) or skips the test unless it runs as root, which
// tests that switch users or bind-mount a store need.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		if InCI() {
			t.Fatalf("this test needs root, and CI runs as root")
		}
		t.Skip("this test needs root")
	}
}
