package main

import (
	"bytes"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	old := version
	t.Cleanup(func() { version = old })
	for _, stamped := range []string{"0.1.0", ""} {
		version = stamped
		var stdout, stderr bytes.Buffer
		code := runVersion(&env{stdout: &stdout, stderr: &stderr}, nil)
		want := `^nix-init \S+ \(` + regexp.QuoteMeta(runtime.Version()) + `, protocol 1\.35, xz: (liblzma [0-9.]+|ulikunitz/xz \(pure Go\))\)\n$`
		if code != exitOK || !regexp.MustCompile(want).MatchString(stdout.String()) {
			t.Errorf("version %q: exit %d, printed %q, want %s", stamped, code, stdout.String(), want)
		}
		if stamped != "" && !strings.HasPrefix(stdout.String(), "nix-init "+stamped+" (") {
			t.Errorf("the stamped version %q is not printed: %q", stamped, stdout.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := runVersion(&env{stdout: &stdout, stderr: &stderr}, []string{"x"}); code != exitUsage || !strings.Contains(stderr.String(), "no arguments") {
		t.Errorf("with an argument: exit %d %q", code, stderr.String())
	}
}
