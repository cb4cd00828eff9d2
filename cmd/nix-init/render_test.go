package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nix-aurora/nix-aurora/bindings"
	"github.com/nix-aurora/nix-aurora/internal/testnix"
)

// TestTemplateFileEndToEnd follows a templated file from the Nix library to
// the sandbox: templateFile's cmdline fragment, Thermos' substitution of
// hostile binding values into the cmdline, /bin/bash -c as Thermos runs it,
// and nix-init render writing the expanded file.
func TestTemplateFileEndToEnd(t *testing.T) {
	testnix.Require(t)
	bin := nixInitBinary(t)
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "app.conf.in")
	os.WriteFile(tmpl, []byte("port = {{thermos.ports[http]}}\nhost = \"{{mesos.hostname}}\"\nagain = {{thermos.ports[http]}}\ninstance = {{mesos.instance}}\n"), 0o644)

	lib := filepath.Join(repoRoot(t), "nix")
	expr := `let a = import ` + lib + `; in "cat " + a.templateFileWith { command = "` + bin + `"; } ` + tmpl
	out, err := exec.Command("nix-instantiate", "--eval", "--read-write-mode", "--json", "-E", expr).Output()
	if err != nil {
		t.Fatalf("nix-instantiate: %v %s", err, errText(err))
	}
	var cmdline string
	if err := jsonUnmarshal(out, &cmdline); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cmdline, "{{thermos.ports[http]}}") || !strings.Contains(cmdline, "'--out' 'app.conf'") {
		t.Fatalf("fragment lacks the binding or the output name:\n%s", cmdline)
	}

	hostile := map[string]string{
		"thermos.ports[http]": "31337",
		"mesos.hostname":      "it's a \"host\" with $HOME and `id` and $(touch pwned)\nand a second line",
		"mesos.instance":      "",
	}
	// What Thermos does to the cmdline before bash sees it.
	expanded, err := bindings.Expand(cmdline, hostile, true)
	if err != nil {
		t.Fatal(err)
	}
	sandbox := t.TempDir()
	cmd := exec.Command("/bin/bash", "-c", expanded)
	cmd.Dir = sandbox
	cmd.Env = []string{"HOME=" + sandbox, "PATH=/usr/bin:/bin"}
	got, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash -c: %v\n%s", err, got)
	}
	want := "port = 31337\nhost = \"" + hostile["mesos.hostname"] + "\"\nagain = 31337\ninstance = \n"
	if string(got) != want {
		t.Fatalf("rendered file:\n%q\nwant\n%q", got, want)
	}
	if _, err := os.Stat(filepath.Join(sandbox, "pwned")); err == nil {
		t.Fatal("a binding value was executed by the shell")
	}
	if data, _ := os.ReadFile(filepath.Join(sandbox, "app.conf")); string(data) != want {
		t.Fatalf("app.conf in the sandbox = %q", data)
	}
}

func TestRenderUsage(t *testing.T) {
	bin := nixInitBinary(t)
	for _, args := range [][]string{
		{"render"},
		{"render", "--template", "x", "--separator", "S", "--out", "../escape"},
		{"render", "--template", "x", "--separator", "S", "--out", ".hidden"},
	} {
		err := exec.Command(bin, args...).Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitUsage {
			t.Errorf("%v: %v, want exit %d", args, err, exitUsage)
		}
	}
	// A value section missing: a clear failure, not a half-written file.
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "t")
	os.WriteFile(tmpl, []byte("{{a}} {{b}}"), 0o644)
	cmd := exec.Command(bin, "render", "--template", tmpl, "--out", "t.out", "--separator", "SEP", "--binding", "a", "--binding", "b")
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader("1\nSEP\n")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitPermanent || !strings.Contains(string(out), "no separator") {
		t.Fatalf("missing value: %v %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "t.out")); err == nil {
		t.Fatal("output written despite the error")
	}
}

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
