package main

import (
	"regexp"
	"runtime"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	old := version
	t.Cleanup(func() { version = old })
	want := regexp.MustCompile(`^nixaurora \S+ \(` + regexp.QuoteMeta(runtime.Version()) + `, ` + runtime.GOOS + `/` + runtime.GOARCH + `\)\n$`)
	for _, stamped := range []string{"", "0.1.0"} {
		version = stamped
		for _, args := range [][]string{{"version"}, {"--version"}} {
			code, out, errOut := runCLI(t, args...)
			if code != exitOK || !want.MatchString(out) || errOut != "" {
				t.Errorf("%q, version %q: exit %d, %q %q", args, stamped, code, out, errOut)
			}
			if stamped != "" && !strings.HasPrefix(out, "nixaurora 0.1.0 (") {
				t.Errorf("%q: the stamped version is not printed: %q", args, out)
			}
		}
	}
	if code, _, errOut := runCLI(t, "version", "x"); code != exitUsage || !strings.Contains(errOut, "no arguments") {
		t.Errorf("version x: exit %d %q", code, errOut)
	}
}
