package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An integer beyond int64 is refused, naming the field; priority is an i32
// of Aurora's API, whose extremes pass.
func TestValidateIntegerRange(t *testing.T) {
	dir := t.TempDir()
	job := func(priority string) string {
		f := filepath.Join(dir, "priority"+priority+".json")
		os.WriteFile(f, []byte(`{"name": "x", "role": "r", "cluster": "c", "environment": "devel", "priority": `+priority+`,
			"task": {"processes": [{"name": "p", "cmdline": "true"}], "resources": {"cpu": 1, "ram": 1048576, "disk": 1048576}}}`), 0o644)
		return f
	}
	for _, n := range []string{"-2147483648", "2147483647"} {
		if code, out, errOut := runCLI(t, "validate", job(n)); code != exitOK {
			t.Errorf("priority %s: exit %d\n%s%s", n, code, out, errOut)
		}
	}
	for _, n := range []string{"-9223372036854775809", "9223372036854775808"} {
		f := job(n)
		code, _, errOut := runCLI(t, "validate", f)
		want := "priority: expected an integer, got " + n + " (out of range for a 64-bit integer)"
		if code != exitFailure || !strings.Contains(errOut, want) || !strings.Contains(errOut, f) {
			t.Errorf("priority %s: exit %d, want 1 and %q naming the file:\n%s", n, code, want, errOut)
		}
	}
}
