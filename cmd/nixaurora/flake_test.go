package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nix-aurora/nix-aurora/aurora"
	"github.com/nix-aurora/nix-aurora/compile"
	"github.com/nix-aurora/nix-aurora/internal/testnix"
)

// The files of the repository that its flake evaluates: a copy of just
// these is a path: flake that Nix copies to the store in a moment, and
// the tests never depend on the checkout being a clean git tree.
var flakeFiles = []string{"flake.nix", "flake.lock", "default.nix", "nix/default.nix", "nix/aurora.nix"}

// flakes writes, in a temporary directory, a copy of this repository's
// flake (lib), a stand-in for nixpkgs (stub: pkgsStatic.buildGoModule
// makes a derivation named after its pname) and a flake of jobs (jobs)
// that takes lib as its nix-aurora input, as examples/flake does.
func flakes(t *testing.T) (lib, stub, jobs string) {
	t.Helper()
	root := repoRoot(t)
	dir := t.TempDir()
	lib, stub, jobs = filepath.Join(dir, "lib"), filepath.Join(dir, "stub"), filepath.Join(dir, "jobs")
	for _, f := range flakeFiles {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(lib, f), string(data))
	}
	writeFile(t, filepath.Join(stub, "flake.nix"), `{
  outputs = { self }:
    let stub = system: {
      pkgsStatic = {
        xz = "xz";
        buildGoModule = args: derivation {
          name = "${args.pname}-${args.version}";
          inherit system;
          builder = "/bin/sh";
          args = [ "-c" "echo $subPackages > $out" ];
          inherit (args) subPackages;
        };
      };
    };
    in { legacyPackages = { x86_64-linux = stub "x86_64-linux"; aarch64-linux = stub "aarch64-linux"; }; };
}
`)
	writeFile(t, filepath.Join(jobs, "flake.nix"), `{
  inputs.nix-aurora.url = "path:`+lib+`";
  outputs = { self, nix-aurora }:
    let
      jobsFor = system: with nix-aurora.lib.forSystem system; {
        hello = Job {
          cluster = "devcluster"; role = "www-data"; environment = "devel"; name = "flake_hello";
          task = Task {
            processes = [ (Process { name = "hello"; cmdline = "/bin/echo hello {{mesos.instance}}"; }) ];
            resources = Resources { cpu = 0.1; ram = 16 * MB; disk = 16 * MB; };
          };
        };
        broken = Job { cluster = "devcluster"; };
      };
    in {
      legacyPackages = builtins.listToAttrs (map
        (system: { name = system; value = { jobs = jobsFor system; }; })
        [ "x86_64-linux" "aarch64-linux" ]);
    };
}
`)
	return lib, stub, jobs
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func nixFlakes(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("nix", append([]string{"--extra-experimental-features", compile.FlakeFeatures}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nix %s: %v\n%s", strings.Join(args, " "), err, errText(err))
	}
	return out
}

func errText(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// TestFlakeShow checks the repository's flake as Nix sees it: flake.lock
// locks nixpkgs, lib needs no input, and packages has nix-init and
// nixaurora (with a stand-in nixpkgs, as there is no nixpkgs offline) from
// default.nix's derivations.
func TestFlakeShow(t *testing.T) {
	testnix.Require(t)
	lib, stub, _ := flakes(t)

	var meta struct {
		Locks struct {
			Nodes map[string]struct {
				Locked map[string]any `json:"locked"`
			} `json:"nodes"`
		} `json:"locks"`
	}
	if err := json.Unmarshal(nixFlakes(t, "flake", "metadata", "--json", "path:"+lib), &meta); err != nil {
		t.Fatal(err)
	}
	nixpkgs := meta.Locks.Nodes["nixpkgs"].Locked
	if nixpkgs["type"] != "github" || nixpkgs["repo"] != "nixpkgs" || len(nixpkgs["rev"].(string)) != 40 || nixpkgs["narHash"] == nil {
		t.Errorf("flake.lock locks nixpkgs as %v", nixpkgs)
	}

	// lib evaluates without fetching nixpkgs (which would fail offline).
	if out := nixFlakes(t, "eval", "--json", "path:"+lib+"#lib.MB"); strings.TrimSpace(string(out)) != "1048576" {
		t.Errorf("lib.MB = %s", out)
	}

	var show struct {
		Lib      map[string]any                          `json:"lib"`
		Packages map[string]map[string]map[string]string `json:"packages"`
	}
	args := []string{"flake", "show", "--json", "--override-input", "nixpkgs", "path:" + stub, "path:" + lib}
	if testnix.AtLeast(t, 2, 14) {
		// From 2.14 on, other systems' outputs are shown only when asked.
		args = append(args, "--all-systems")
	}
	out := nixFlakes(t, args...)
	if err := json.Unmarshal(out, &show); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if show.Lib == nil {
		t.Errorf("flake show lists no lib: %s", out)
	}
	for _, system := range []string{"x86_64-linux", "aarch64-linux"} {
		for pkg, name := range map[string]string{"nix-init": "nix-init-0.1.0", "nixaurora": "nixaurora-0.1.0", "default": "nixaurora-0.1.0"} {
			if got := show.Packages[system][pkg]; got["type"] != "derivation" || got["name"] != name {
				t.Errorf("packages.%s.%s = %v, want the derivation %s", system, pkg, got, name)
			}
		}
	}
}

// TestBuildFlakeJob builds a job kept as a flake output, as nix build
// takes it (PATH#ATTR, .#ATTR), and validates its JSON as for a file.
func TestBuildFlakeJob(t *testing.T) {
	testnix.Require(t)
	_, _, jobs := flakes(t)

	code, out, errOut := runCLI(t, "build", "path:"+jobs+"#jobs.hello")
	if code != exitOK {
		t.Fatalf("build exit %d\n%s", code, errOut)
	}
	path := strings.TrimSpace(out)
	if !strings.HasPrefix(path, "/nix/store/") || !strings.HasSuffix(path, ".json") {
		t.Fatalf("build printed %q", out)
	}
	// What nix build itself makes of .#jobs.hello is the same JSON.
	var built []struct {
		Outputs map[string]string `json:"outputs"`
	}
	if err := json.Unmarshal(nixFlakes(t, "build", "--json", "--no-link", "path:"+jobs+"#jobs.hello"), &built); err != nil {
		t.Fatal(err)
	}
	if len(built) != 1 || built[0].Outputs["out"] != path {
		t.Errorf("nix build gives %v, nixaurora %s", built, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := aurora.ValidateDocument(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.Jobs) != 1 || doc.Jobs[0].Key() != "devcluster/www-data/devel/flake_hello" {
		t.Errorf("jobs: %+v", doc.Jobs)
	}

	t.Chdir(jobs)
	link := filepath.Join(t.TempDir(), "job.json")
	if code, out, errOut := runCLI(t, "build", ".#jobs.hello", "-o", link); code != exitOK || strings.TrimSpace(out) != path {
		t.Fatalf("build .#jobs.hello: exit %d, %q\n%s", code, out, errOut)
	}
	if target, err := os.Readlink(link); err != nil || target != path {
		t.Errorf("out-link %s -> %q (%v), want %s", link, target, err, path)
	}
	// diff shares the expression loading of run and push.
	if code, out, errOut := runCLI(t, "diff", ".#jobs.hello", link); code != exitOK {
		t.Errorf("diff of a flake output and its own JSON: exit %d\n%s%s", code, out, errOut)
	}
}

// TestBuildFlakeFailures: a flake reference takes no -A, and Nix's own
// failures name the reference and the command.
func TestBuildFlakeFailures(t *testing.T) {
	testnix.Require(t)
	_, _, jobs := flakes(t)
	ref := "path:" + jobs + "#jobs."

	if code, _, errOut := runCLI(t, "build", ref+"hello", "-A", "hello"); code == exitOK || !strings.Contains(errOut, "flake reference") {
		t.Errorf("-A with a flake reference: exit %d\n%s", code, errOut)
	}
	code, _, errOut := runCLI(t, "build", ref+"nope")
	if code == exitOK || !strings.Contains(errOut, "nix build "+ref+"nope") || !strings.Contains(errOut, "jobs.nope") {
		t.Errorf("a missing output: exit %d\n%s", code, errOut)
	}
	code, _, errOut = runCLI(t, "build", ref+"broken")
	if code == exitOK || !strings.Contains(errOut, "aurora: job devcluster/") {
		t.Errorf("a job the library rejects: exit %d\n%s", code, errOut)
	}
}

func TestIsFlakeRef(t *testing.T) {
	t.Chdir(t.TempDir())
	writeFile(t, "job.nix", "{}")
	writeFile(t, "odd#name.nix", "{}")
	for ref, want := range map[string]bool{
		".#jobs.hello":                     true,
		"./jobs#jobs.hello":                true,
		"/srv/jobs#jobs.hello":             true,
		"github:acme/jobs#jobs.hello":      true,
		"git+https://example.org/j#jobs.x": true,
		"path:/srv/jobs":                   true,
		".":                                false,
		"job.nix":                          false,
		"odd#name.nix":                     false, // an existing file stays a file
		"missing.nix":                      false,
		"result":                           false,
	} {
		if got := compile.IsFlakeRef(ref); got != want {
			t.Errorf("IsFlakeRef(%q) = %v, want %v", ref, got, want)
		}
	}
}

// TestRunFlakeJob: run takes a flake reference as build does, and runs the
// job it names.
func TestRunFlakeJob(t *testing.T) {
	testnix.Require(t)
	_, _, jobs := flakes(t)
	dir := t.TempDir()
	standIn := filepath.Join(dir, "nix-init")
	os.WriteFile(standIn, []byte("#!/bin/sh\necho \"stand-in nix-init $*\"\n"), 0o755)
	code, out, errOut := runCLI(t, "run", "path:"+jobs+"#jobs.hello", "--sandbox", filepath.Join(dir, "sandbox"),
		"--nix-init", standIn, "--no-health-checks")
	if code != exitOK || !strings.Contains(out, "devcluster/www-data/devel/flake_hello") || !strings.Contains(out, "task SUCCESS") &&
		!strings.Contains(out, ": SUCCESS after") {
		t.Fatalf("run of a flake output: exit %d\n%s%s", code, out, errOut)
	}
}
