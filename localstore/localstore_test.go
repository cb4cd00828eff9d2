package localstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nix-aurora/nix-aurora/internal/testnix"
	"github.com/nix-aurora/nix-aurora/internal/testnode"
	"github.com/nix-aurora/nix-aurora/nar"
)

// tree makes a file tree with every kind of entry a NAR holds.
func tree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src")
	for _, d := range []string{"bin", "share/doc", "empty"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]struct {
		data string
		mode os.FileMode
	}{
		"bin/hello":        {"#!/bin/sh\necho hello\n", 0o755},
		"share/doc/README": {strings.Repeat("big ", 100_000), 0o644},
		"share/empty-file": {"", 0o600},
	}
	for name, f := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(f.data), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../share/doc/README", filepath.Join(dir, "bin/readme")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/nowhere/at/all", filepath.Join(dir, "dangling")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func dump(t *testing.T, path string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := nar.DumpPath(&b, path); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestUnpackCanonical: what Unpack creates dumps to the same NAR, and is
// in Nix's canonical form (modes, mtimes).
func TestUnpackCanonical(t *testing.T) {
	want := dump(t, tree(t))
	target := filepath.Join(t.TempDir(), "out")
	n, err := Unpack(target, bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(want)) {
		t.Errorf("size %d, want %d", n, len(want))
	}
	if got := dump(t, target); !bytes.Equal(got, want) {
		t.Fatalf("the unpacked tree dumps to another NAR")
	}
	t.Cleanup(func() { RemoveAll(target) })
	checkCanonical(t, target)
}

// TestUnpackUmask: the modes are Nix's under a umask that takes every
// permission from group and others (which `--verify --check-contents`
// does not notice).
func TestUnpackUmask(t *testing.T) {
	target := filepath.Join(t.TempDir(), "out")
	nar := dump(t, tree(t))
	old := syscall.Umask(0o077) // no test here runs in parallel
	_, err := Unpack(target, bytes.NewReader(nar))
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { RemoveAll(target) })
	checkCanonical(t, target)
}

// checkCanonical checks the modes and mtimes of the tree at target (made
// from tree).
func checkCanonical(t *testing.T, target string) {
	t.Helper()
	err := filepath.WalkDir(target, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if st.Mtim.Sec != 1 {
			t.Errorf("%s: mtime %d, want 1", p, st.Mtim.Sec)
		}
		perm := st.Mode & 0o7777
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			if perm != 0o555 {
				t.Errorf("%s: directory mode %o", p, perm)
			}
		case unix.S_IFREG:
			want := uint32(0o444)
			if strings.HasSuffix(p, "bin/hello") {
				want = 0o555
			}
			if perm != want {
				t.Errorf("%s: file mode %o, want %o", p, perm, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// rawNar encodes tokens as NAR strings, without any checks.
func rawNar(tokens ...string) []byte {
	var b bytes.Buffer
	for _, s := range tokens {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		b.Write(n[:])
		b.WriteString(s)
		b.Write(make([]byte, (8-len(s)%8)%8))
	}
	return b.Bytes()
}

// TestUnpackRefusesAndCleansUp: a NAR the strict reader refuses, or a
// stream that fails (a hash found wrong at its end), leaves nothing.
func TestUnpackRefusesAndCleansUp(t *testing.T) {
	good := dump(t, tree(t))
	cases := map[string]io.Reader{
		"dot-dot entry": bytes.NewReader(rawNar(nar.Magic, "(", "type", "directory",
			"entry", "(", "name", "..", "node", "(", "type", "regular", "contents", "pwned\n", ")", ")", ")")),
		"duplicate entry": bytes.NewReader(rawNar(nar.Magic, "(", "type", "directory",
			"entry", "(", "name", "a", "node", "(", "type", "symlink", "target", "/etc", ")", ")",
			"entry", "(", "name", "a", "node", "(", "type", "directory", ")", ")", ")")),
		"truncated":     bytes.NewReader(good[:len(good)/2]),
		"trailing data": io.MultiReader(bytes.NewReader(good), bytes.NewReader(rawNar("x"))),
		"stream error":  io.MultiReader(bytes.NewReader(good), iotestErr{}),
	}
	for name, r := range cases {
		t.Run(name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "out")
			if _, err := Unpack(target, r); err == nil {
				t.Fatal("no error")
			}
			if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s is left: %v", target, err)
			}
		})
	}
}

type iotestErr struct{}

func (iotestErr) Read([]byte) (int, error) { return 0, errors.New("NAR hash mismatch") }

// TestUnpackNeverOverwrites: an existing target (file or symlink) is an
// error, and is left as it was.
func TestUnpackNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	file := rawNar(nar.Magic, "(", "type", "regular", "contents", "new", ")")
	for _, target := range []string{victim, link} {
		if _, err := Unpack(target, bytes.NewReader(file)); err == nil {
			t.Errorf("unpacked over %s", target)
		}
	}
	if data, _ := os.ReadFile(victim); string(data) != "keep" {
		t.Errorf("victim now holds %q", data)
	}
}

// TestRemoveAllReadOnly removes a canonical (read-only) tree, as a user
// who is not root must be able to.
func TestRemoveAllReadOnly(t *testing.T) {
	target := filepath.Join(t.TempDir(), "out")
	if _, err := Unpack(target, bytes.NewReader(dump(t, tree(t)))); err != nil {
		t.Fatal(err)
	}
	if err := RemoveAll(target); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("still there: %v", err)
	}
	if err := RemoveAll(target); err != nil {
		t.Errorf("removing what is gone: %v", err)
	}
}

// TestTryLock: exclusive against other holders of the lock file (Nix
// flocks the same file), deleted when done, and a lock file its last
// holder deleted (marked with a byte) is not trusted.
func TestTryLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "abc-x")
	l, err := TryLock(path)
	if err != nil || l == nil {
		t.Fatalf("TryLock = %v, %v", l, err)
	}
	if l2, err := TryLock(path); err != nil || l2 != nil {
		t.Fatalf("a second lock was granted: %v, %v", l2, err)
	}
	// What Nix does when it waits: open the same file and flock it.
	f, err := os.OpenFile(path+".lock", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, syscall.EWOULDBLOCK) {
		t.Fatalf("Nix's flock while we hold the lock: %v", err)
	}
	l.Unlock(true)
	if _, err := os.Stat(path + ".lock"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the lock file was not deleted: %v", err)
	}
	// The waiter gets the lock on the deleted file, and sees the mark.
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if st, _ := f.Stat(); st.Size() == 0 {
		t.Errorf("the deleted lock file was not marked stale")
	}
	// A marked file that stays at the path is an error, not a lock.
	if err := os.WriteFile(path+".lock", []byte("d"), 0o600); err != nil {
		t.Fatal(err)
	}
	if l, err := TryLock(path); l != nil || err == nil || !strings.Contains(err.Error(), "marked deleted") {
		t.Fatalf("TryLock on a marked lock file = %v, %v", l, err)
	}
	os.Remove(path + ".lock")
	l, err = TryLock(path)
	if err != nil || l == nil {
		t.Fatalf("TryLock = %v, %v", l, err)
	}
	l.Unlock(false)
	if _, err := os.Stat(path + ".lock"); err != nil {
		t.Errorf("Unlock(false) removed the lock file: %v", err)
	}
}

// TestRegister unpacks a closure built on the host into a fresh chroot
// store and registers it in one transaction: Nix then finds it valid, with
// its references, and verifies its contents.
func TestRegister(t *testing.T) {
	testnix.Require(t)
	fx := testnode.Chain(t, "localstore-register", 2, 2, 4096)
	node := testnode.NewNode(t, testnode.NodeOptions{})
	node.ValidPaths(t) // opening the store makes its directories
	ls := &Store{Dir: filepath.Join(node.Root, "nix/store"), StoreArg: node.StoreURI(), Env: node.Env()}
	var regs []Registration
	for _, p := range fx.Closure { // references first
		if _, err := Unpack(ls.RealPath(p), bytes.NewReader(dump(t, p))); err != nil {
			t.Fatal(err)
		}
		regs = append(regs, hostRegistration(t, p))
	}
	if err := ls.NewRegistrar(context.Background()).Register(regs); err != nil {
		t.Fatal(err)
	}
	if bad := node.Invalid(t, fx.Closure...); len(bad) > 0 {
		t.Fatalf("not valid: %v", bad)
	}
	got := strings.Fields(node.NixStore(t, "--query", "--requisites", fx.Root))
	if len(got) != len(fx.Closure) {
		t.Errorf("the node's closure of the root has %d paths, want %d", len(got), len(fx.Closure))
	}
	node.Verify(t)

	// A batch whose reference is neither valid nor in it is refused whole.
	fx2 := testnode.Chain(t, "localstore-register-broken", 2, 1, 1024)
	top := fx2.Closure[len(fx2.Closure)-1]
	if _, err := Unpack(ls.RealPath(top), bytes.NewReader(dump(t, top))); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nix-store", "--query", "--hash", top).Output()
	if err != nil {
		t.Fatal(err)
	}
	err = ls.NewRegistrar(context.Background()).Register([]Registration{{Path: top, NarHash: strings.TrimSpace(string(out)), NarSize: 1, References: fx2.Closure[:1]}})
	if err == nil || !strings.Contains(err.Error(), "--load-db") {
		t.Fatalf("registered a path whose reference is missing: %v", err)
	}
	if node.Valid(t, top) {
		t.Error("the refused path is valid")
	}
}

// TestRegistrar registers a closure in two batches, each through a
// process started ahead, and a prepared process that gets no batch
// registers nothing.
func TestRegistrar(t *testing.T) {
	testnix.Require(t)
	fx := testnode.Chain(t, "localstore-registrar", 2, 2, 1024)
	node := testnode.NewNode(t, testnode.NodeOptions{})
	node.ValidPaths(t)
	ls := &Store{Dir: filepath.Join(node.Root, "nix/store"), StoreArg: node.StoreURI(), Env: node.Env()}
	var regs []Registration
	for _, p := range fx.Closure {
		if _, err := Unpack(ls.RealPath(p), bytes.NewReader(dump(t, p))); err != nil {
			t.Fatal(err)
		}
		regs = append(regs, hostRegistration(t, p))
	}
	r := ls.NewRegistrar(context.Background())
	half := len(regs) / 2 // references first: the first half stands alone
	r.Prepare(nil)
	if err := r.Register(regs[:half]); err != nil {
		t.Fatal(err)
	}
	if bad := node.Invalid(t, fx.Closure[:half]...); len(bad) > 0 {
		t.Fatalf("first batch not valid: %v", bad)
	}
	r.Prepare(nil)
	if err := r.Register(regs[half:]); err != nil {
		t.Fatal(err)
	}
	r.Prepare(nil)
	r.Close()
	if bad := node.Invalid(t, fx.Closure...); len(bad) > 0 {
		t.Fatalf("not valid: %v", bad)
	}
	node.Verify(t)
}

// hostRegistration is what the host store records of p.
func hostRegistration(t *testing.T, p string) Registration {
	t.Helper()
	q := func(what string) []string {
		out, err := exec.Command("nix-store", "--query", what, p).Output()
		if err != nil {
			t.Fatalf("nix-store --query %s %s: %v", what, p, err)
		}
		return strings.Fields(string(out))
	}
	var size uint64
	if _, err := fmt.Sscan(q("--size")[0], &size); err != nil {
		t.Fatal(err)
	}
	return Registration{Path: p, NarHash: q("--hash")[0], NarSize: size, References: q("--references")}
}
