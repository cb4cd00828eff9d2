package gcroots

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorder is a Registrar that remembers what it was asked; the real daemon
// path is covered by nix-init's integration tests.
type recorder struct {
	links []string
	err   error
}

func (r *recorder) AddIndirectRoot(_ context.Context, link string) error {
	r.links = append(r.links, link)
	return r.err
}

const target = "/nix/store/l6y0ksiq9a558a12azxw4kr9w5j2z52r-ref-doc-dep"

func TestAutoNameMatchesNix(t *testing.T) {
	// The example from the reference, checked against Nix 2.8.
	if got, want := AutoName("/tmp/ref/roots/app"), "1pmfkzbxxdd0wags85mgfwfyakzgy1l5"; got != want {
		t.Fatalf("AutoName = %s, want %s", got, want)
	}
}

func TestAddCreatesAndRegisters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".gc")
	var reg recorder
	link, err := Add(context.Background(), &reg, dir, "hello", target)
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(link) || link != filepath.Join(dir, "hello") {
		t.Fatalf("link = %s", link)
	}
	if got, _ := os.Readlink(link); got != target {
		t.Fatalf("link points to %q", got)
	}
	if len(reg.links) != 1 || reg.links[0] != link {
		t.Fatalf("registered %v", reg.links)
	}
	// Replacing an existing root is atomic and leaves no temporary links.
	other := "/nix/store/m647zn09hzv7n18i15qr20d42vhc7iq0-ref-doc-app"
	if _, err := Add(context.Background(), &reg, dir, "hello", other); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("entries after replace: %v", entries)
	}
	roots, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(roots) != 1 || roots[0].Target != other || roots[0].Stray {
		t.Fatalf("roots = %+v", roots)
	}
}

func TestAddRefuses(t *testing.T) {
	dir := t.TempDir()
	var reg recorder
	for _, name := range []string{"", "a/b", ".hidden", "..", "x\x00y"} {
		if _, err := Add(context.Background(), &reg, dir, name, target); err == nil {
			t.Errorf("Add(%q) succeeded", name)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Add(context.Background(), &reg, dir, "file", target)
	if err == nil || !strings.Contains(err.Error(), "not a symlink") {
		t.Fatalf("overwriting a regular file: %v", err)
	}
	if len(reg.links) != 0 {
		t.Fatalf("registered despite refusals: %v", reg.links)
	}
}

func TestAddRegistrationError(t *testing.T) {
	reg := recorder{err: errors.New("daemon went away")}
	_, err := Add(context.Background(), &reg, t.TempDir(), "x", target)
	if err == nil || !errors.Is(err, reg.err) || !strings.Contains(err.Error(), target) {
		t.Fatalf("err = %v", err)
	}
}

func TestListAndRegistered(t *testing.T) {
	dir := t.TempDir()
	if roots, err := List(filepath.Join(dir, "missing")); err != nil || roots != nil {
		t.Fatalf("missing dir: %v %v", roots, err)
	}
	os.Symlink(target, filepath.Join(dir, "b"))
	os.Symlink("/etc/passwd", filepath.Join(dir, "a"))
	os.Symlink(target, filepath.Join(dir, ".b.tmp-1-abc"))
	roots, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(roots) != 2 || roots[0].Name != "a" || !roots[0].Stray || roots[1].Name != "b" || roots[1].Stray {
		t.Fatalf("roots = %+v", roots)
	}

	state := t.TempDir()
	link := filepath.Join(dir, "b")
	if ok, err := Registered(state, link); err != nil || ok {
		t.Fatalf("before registration: %v %v", ok, err)
	}
	auto := filepath.Join(state, "gcroots", "auto")
	os.MkdirAll(auto, 0o755)
	os.Symlink(link, filepath.Join(auto, AutoName(link)))
	if ok, err := Registered(state, link); err != nil || !ok {
		t.Fatalf("after registration: %v %v", ok, err)
	}
}

// A planted .gc (or a component of a relative root dir) that is a symlink
// is never followed: nothing is created or registered where it points, and
// List does not report what is there as this sandbox's roots.
func TestSymlinkedDirIsRefused(t *testing.T) {
	sandbox, outside := t.TempDir(), t.TempDir()
	t.Chdir(sandbox)
	os.Symlink(target, filepath.Join(outside, "planted"))
	if err := os.Symlink(outside, ".gc"); err != nil {
		t.Fatal(err)
	}
	os.Mkdir("sub", 0o755)
	if err := os.Symlink(outside, "sub/link"); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{".gc", filepath.Join(sandbox, ".gc"), "sub/link/.gc", "./sub/link"} {
		var reg recorder
		_, err := Add(context.Background(), &reg, dir, "app", target)
		if err == nil || !strings.Contains(err.Error(), "is a symlink") {
			t.Errorf("Add in %s: err = %v, want a refusal of the symlink", dir, err)
		}
		if len(reg.links) != 0 {
			t.Errorf("Add in %s registered %v", dir, reg.links)
		}
		if roots, err := List(dir); err == nil || roots != nil {
			t.Errorf("List(%s) = %+v, %v; want a refusal of the symlink", dir, roots, err)
		}
	}
	entries, _ := os.ReadDir(outside)
	if len(entries) != 1 || entries[0].Name() != "planted" {
		t.Errorf("the directory outside the sandbox now has %v", entries)
	}
}

// A .gc that is not a directory, or not the run's user's, is refused with
// a message naming it.
func TestForeignOrFileDirIsRefused(t *testing.T) {
	sandbox := t.TempDir()
	t.Chdir(sandbox)
	os.WriteFile("file", []byte("x"), 0o644)
	var reg recorder
	if _, err := Add(context.Background(), &reg, "file", "app", target); err == nil || !strings.Contains(err.Error(), "file is not a directory") {
		t.Errorf("Add in a regular file: %v", err)
	}
	if os.Geteuid() == 0 {
		os.Mkdir("theirs", 0o777)
		if err := os.Chown("theirs", 65533, 65533); err != nil {
			t.Fatal(err)
		}
		_, err := Add(context.Background(), &reg, "theirs", "app", target)
		if err == nil || !strings.Contains(err.Error(), "theirs is owned by uid 65533") {
			t.Errorf("Add in another user's directory: %v", err)
		}
		if entries, _ := os.ReadDir("theirs"); len(entries) != 0 {
			t.Errorf("links made in another user's directory: %v", entries)
		}
		// Listing needs no ownership: status may be run by another user.
		if _, err := List("theirs"); err != nil {
			t.Errorf("List of another user's directory: %v", err)
		}
	}
	// An entry that is a directory is not replaced by a link either.
	os.MkdirAll(".gc/app", 0o755)
	if _, err := Add(context.Background(), &reg, ".gc", "app", target); err == nil || !strings.Contains(err.Error(), "not a symlink") {
		t.Errorf("Add over a directory: %v", err)
	}
	if len(reg.links) != 0 {
		t.Errorf("registered despite refusals: %v", reg.links)
	}
}
