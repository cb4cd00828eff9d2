package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"
)

// repoRoot is the checkout's top directory, where the examples live.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot find the source directory")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// runCLI runs nixaurora in-process and returns its exit code and output.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), &env{stdout: &stdout, stderr: &stderr}, args)
	return code, stdout.String(), stderr.String()
}

func TestUsage(t *testing.T) {
	if code, _, _ := runCLI(t); code != exitUsage {
		t.Fatalf("no arguments: exit %d", code)
	}
	code, out, _ := runCLI(t, "--help")
	if code != exitOK || !strings.Contains(out, "build") || !strings.Contains(out, "validate") || !strings.Contains(out, "Exit codes") {
		t.Fatalf("help: exit %d\n%s", code, out)
	}
	if code, _, errOut := runCLI(t, "frobnicate"); code != exitUsage || !strings.Contains(errOut, "unknown command") {
		t.Fatalf("unknown command: exit %d %s", code, errOut)
	}
	if code, _, _ := runCLI(t, "validate"); code != exitUsage {
		t.Fatalf("validate without files: exit %d", code)
	}
	if code, _, _ := runCLI(t, "build", "--arg", "novalue"); code != exitUsage {
		t.Fatalf("build --arg without '=': exit %d", code)
	}
}

func TestValidateHandWritten(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`{"name": "hello", "role": "www-data", "cluster": "devcluster", "environment": "devel",
		"task": {"name": "hello", "processes": [{"name": "hello", "cmdline": "echo hello {{mesos.instance}}"}],
		         "resources": {"cpu": 0.5, "ram": 16777216, "disk": 16777216}}}`), 0o644)
	code, out, errOut := runCLI(t, "validate", good)
	if code != exitOK || !strings.Contains(out, "good.json: ok") {
		t.Fatalf("good: exit %d\n%s%s", code, out, errOut)
	}

	cases := map[string]struct{ doc, want string }{
		"null": {`{"name": "x", "role": "r", "cluster": "c", "environment": "devel", "contact": null,
			"task": {"processes": [{"name": "p", "cmdline": "true"}], "resources": {"cpu": 1, "ram": 1048576, "disk": 1048576}}}`, "contact"},
		"unknown key": {`{"name": "x", "role": "r", "cluster": "c", "environment": "devel", "update_config": {"restart_threshold": 10},
			"task": {"processes": [{"name": "p", "cmdline": "true"}], "resources": {"cpu": 1, "ram": 1048576, "disk": 1048576}}}`, "restart_threshold"},
		"small ram": {`{"name": "x", "role": "r", "cluster": "c", "environment": "devel",
			"task": {"processes": [{"name": "p", "cmdline": "true"}], "resources": {"cpu": 1, "ram": 1000, "disk": 1048576}}}`, "ram"},
		"cycle": {`{"name": "x", "role": "r", "cluster": "c", "environment": "devel",
			"task": {"processes": [{"name": "a", "cmdline": "true"}, {"name": "b", "cmdline": "true"}],
			         "constraints": [{"order": ["a", "b"]}, {"order": ["b", "a"]}],
			         "resources": {"cpu": 1, "ram": 1048576, "disk": 1048576}}}`, "Cycles detected"},
		"unbound": {`{"name": "x", "role": "r", "cluster": "c", "environment": "devel",
			"task": {"processes": [{"name": "p", "cmdline": "echo {{nope}}"}], "resources": {"cpu": 1, "ram": 1048576, "disk": 1048576}}}`, "nope"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			f := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".json")
			os.WriteFile(f, []byte(c.doc), 0o644)
			code, _, errOut := runCLI(t, "validate", good, f)
			if code != exitFailure || !strings.Contains(errOut, c.want) || !strings.Contains(errOut, f) {
				t.Fatalf("exit %d, want 1 and a message naming %q and the file:\n%s", code, c.want, errOut)
			}
		})
	}
	if code, _, errOut := runCLI(t, "validate", filepath.Join(dir, "missing.json")); code != exitFailure || !strings.Contains(errOut, "missing.json") {
		t.Fatalf("missing file: exit %d %s", code, errOut)
	}
}

// TestMain keeps nix-build off the default public cache: the test network
// cannot reach it, and Nix would spend seconds retrying for every build.
func TestMain(m *testing.M) {
	os.Setenv("NIX_CONFIG", "substituters =\n"+os.Getenv("NIX_CONFIG"))
	os.Exit(m.Run())
}

// Help text fits in helpWidth columns, and a description that takes more
// than one line goes on under its own column (a hanging indent).
func TestHelpLayout(t *testing.T) {
	checkWidth := func(what, text string) {
		for _, l := range strings.Split(text, "\n") {
			if n := utf8.RuneCountInString(l); n > helpWidth {
				t.Errorf("%s: a line of %d columns:\n%s", what, n, l)
			}
		}
	}
	_, out, _ := runCLI(t, "--help")
	checkWidth("--help", out)
	block := strings.SplitN(strings.SplitN(out, "Commands:\n", 2)[1], "\n\n", 2)[0]
	entry := regexp.MustCompile(`^  ([a-z]+) +\S`)
	entries := 0
	for _, l := range strings.Split(block, "\n") {
		switch m := entry.FindStringSubmatchIndex(l); {
		case m != nil:
			entries++
			if m[1]-1 != 13 {
				t.Errorf("--help: the description of %q starts at column %d, want 13", l[m[2]:m[3]], m[1]-1)
			}
		case !strings.HasPrefix(l, strings.Repeat(" ", 13)) || l[13] == ' ':
			t.Errorf("--help: a continuation line not under the descriptions' column:\n%q", l)
		}
	}
	if entries != len(commands) {
		t.Errorf("--help lists %d commands, want %d:\n%s", entries, len(commands), block)
	}
	for name := range commands {
		code, _, errOut := runCLI(t, name, "--help")
		if code != exitOK {
			t.Errorf("%s --help: exit %d", name, code)
		}
		checkWidth(name+" --help", errOut)
		flags := strings.SplitN(errOut, "Flags:\n", 2)
		if len(flags) != 2 {
			if commands[name].flags != nil {
				t.Errorf("%s --help has no flags section:\n%s", name, errOut)
			}
			continue
		}
		for _, l := range strings.Split(strings.SplitN(flags[1], "\n\n", 2)[0], "\n") {
			if l == "" || strings.HasPrefix(strings.TrimLeft(l, " "), "-") {
				continue
			}
			if !strings.HasPrefix(l, strings.Repeat(" ", 20)) {
				t.Errorf("%s --help: a flag's continuation line not under its description:\n%q", name, l)
			}
		}
	}
}

func TestWrap(t *testing.T) {
	got := wrap("  cmd  ", "one two\nthree four five", 18)
	want := "  cmd  one two\n       three four\n       five\n"
	if got != want {
		t.Errorf("wrap: %q, want %q", got, want)
	}
	if got := wrap("", strings.Repeat("x", 30)+" y", 10); got != strings.Repeat("x", 30)+"\ny\n" {
		t.Errorf("a long word: %q", got)
	}
}
