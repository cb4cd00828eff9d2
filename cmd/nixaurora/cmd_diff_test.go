package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nix-aurora/nix-aurora/internal/testnix"
)

// TestDiffDependencyChange builds one job twice, with another version of a
// library its program uses, and checks that diff names the library.
func TestDiffDependencyChange(t *testing.T) {
	testnix.Require(t)
	dir := t.TempDir()
	job := filepath.Join(repoRoot(t), "cmd", "nixaurora", "testdata", "versioned.nix")
	build := func(name string, args ...string) string {
		link := filepath.Join(dir, name)
		code, _, errOut := runCLI(t, append([]string{"build", job, "-o", link}, args...)...)
		if code != exitOK {
			t.Fatalf("build %s: exit %d\n%s", name, code, errOut)
		}
		return link
	}
	v1 := build("v1.json")
	v2 := build("v2.json", "--argstr", "libVersion=1.1", "--arg", "ram=32")

	code, out, errOut := runCLI(t, "diff", v1, v2)
	if code != exitOK {
		t.Fatalf("diff: exit %d\n%s", code, errOut)
	}
	for _, want := range []string{
		"job devcluster/www-data/devel/greeter:",
		"task.resources.ram: 16777216 -> 33554432",
		"process greet:",
		"~ greeter:",                   // the program's hash changed
		"libgreet-1.0 -> libgreet-1.1", // and why: the library it uses
		"process nix_init:",            // whose root changed
		"aurora-root-devcluster-www-data-devel-greeter-greet",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("diff output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "process idle") {
		t.Errorf("unchanged process listed:\n%s", out)
	}

	// The expression form builds both sides itself.
	code, out, _ = runCLI(t, "diff", job, job)
	if code != exitOK || strings.TrimSpace(out) != "no changes" {
		t.Fatalf("same job: exit %d %q", code, out)
	}
	if code, _, _ := runCLI(t, "diff", v1); code != exitUsage {
		t.Fatalf("one argument: exit %d", code)
	}
	os.Remove(v2)
	if code, _, _ := runCLI(t, "diff", v1, v2); code != exitFailure {
		t.Fatalf("missing file: exit %d", code)
	}
}
