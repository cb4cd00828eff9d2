package main

import (
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nix-aurora/nix-aurora/internal/testnix"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	buildDir  string
)

// nixInitBinary builds the static nix-init once per test run, the way it is
// shipped (scripts/build-nix-init), and returns its path.
func nixInitBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "nix-init-bin-")
		if buildErr != nil {
			return
		}
		// World-readable, so that tests can run it as an unprivileged user.
		os.Chmod(buildDir, 0o755)
		builtBin = filepath.Join(buildDir, "bin", "nix-init")
		cmd := exec.Command("bash", filepath.Join(repoRoot(t), "scripts", "build-nix-init"), builtBin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = &buildError{out: string(out), err: err}
		}
		os.Chmod(filepath.Dir(builtBin), 0o755)
	})
	if buildErr != nil {
		t.Fatalf("build nix-init: %v", buildErr)
	}
	return builtBin
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

func goTool() string {
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// TestStaticBinary: nix-init runs in sandboxes of any node, whatever its
// libc, so the binary must not need a dynamic loader.
func TestStaticBinary(t *testing.T) {
	f, err := elf.Open(nixInitBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("nix-init has an ELF interpreter: it is dynamically linked")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Fatalf("nix-init needs shared libraries: %v", libs)
	}
}

// TestInstallIntoProfile follows the README's cluster-wide install: the
// static binary added to the store and installed into a profile, whose
// bin/nix-init then runs. A scratch profile stands in for the default one.
func TestInstallIntoProfile(t *testing.T) {
	testnix.Require(t)
	profile := filepath.Join(t.TempDir(), "profile")
	cmd := exec.Command("bash", filepath.Join(repoRoot(t), "scripts", "install-nix-init"), profile)
	cmd.Env = append(os.Environ(), "NIX_CONFIG=substituters =")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("install-nix-init: %v\n%s", err, errText(err))
	}
	bin := strings.TrimSpace(string(out))
	if bin != filepath.Join(profile, "bin", "nix-init") {
		t.Fatalf("script printed %q", bin)
	}
	target, err := filepath.EvalSymlinks(bin)
	if err != nil || !strings.HasPrefix(target, "/nix/store/") {
		t.Fatalf("profile's nix-init resolves to %q (%v), want a store path", target, err)
	}
	v, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(v), "nix-init ") {
		t.Fatalf("installed nix-init version: %q %v", v, err)
	}
}

// TestVendorHash keeps default.nix's buildGoModule vendorHash in step with
// go.mod: it is the NAR hash of what `go mod vendor` writes.
func TestVendorHash(t *testing.T) {
	testnix.Require(t)
	root := repoRoot(t)
	nixFile, err := os.ReadFile(filepath.Join(root, "default.nix"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`vendorHash = "([^"]+)"`).FindSubmatch(nixFile)
	if m == nil {
		t.Fatal("default.nix has no vendorHash")
	}
	vendor := filepath.Join(t.TempDir(), "vendor")
	cmd := exec.Command(goTool(), "mod", "vendor", "-o", vendor)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go mod vendor: %v\n%s", err, out)
	}
	out, err := exec.Command("nix", "--experimental-features", "nix-command", "hash", "path", "--sri", vendor).Output()
	if err != nil {
		t.Fatalf("nix hash path: %v %s", err, errText(err))
	}
	if got := strings.TrimSpace(string(out)); got != string(m[1]) {
		t.Fatalf("default.nix vendorHash = %s, but go mod vendor hashes to %s: update default.nix", m[1], got)
	}
}

func errText(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// TestDefaultNixBuildsStatic checks what default.nix asks of nixpkgs for
// nix-init from source (nixpkgs itself is not here, so a stand-in records
// the arguments): the static, liblzma-linked build of build-nix-init.
func TestDefaultNixBuildsStatic(t *testing.T) {
	testnix.Require(t)
	expr := `let pkgs = { pkgsStatic = { buildGoModule = args: args; xz = "static-xz"; }; };
	  drv = (import ` + repoRoot(t) + ` { inherit pkgs; }).nix-init;
	in { inherit (drv) buildInputs tags ldflags subPackages; cgo = drv.env.CGO_ENABLED; }`
	out, err := exec.Command("nix-instantiate", "--eval", "--strict", "--json", "--read-write-mode", "-E", expr).Output()
	if err != nil {
		t.Fatalf("nix-instantiate: %v\n%s", err, errText(err))
	}
	var got struct {
		BuildInputs []string `json:"buildInputs"`
		Tags        []string `json:"tags"`
		Ldflags     []string `json:"ldflags"`
		SubPackages []string `json:"subPackages"`
		Cgo         string   `json:"cgo"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	ldflags := strings.Join(got.Ldflags, " ")
	if got.Cgo != "1" || !slices.Equal(got.BuildInputs, []string{"static-xz"}) ||
		!slices.Contains(got.Tags, "netgo") || !slices.Contains(got.Tags, "osusergo") ||
		!strings.Contains(ldflags, "-extldflags -static") || !slices.Equal(got.SubPackages, []string{"cmd/nix-init"}) {
		t.Errorf("default.nix builds nix-init with %+v", got)
	}
}
