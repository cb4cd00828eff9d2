package localstore

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/internal/testnix"
	"github.com/nix-aurora/nix-aurora/internal/testnode"
)

// lockedNode is a fresh node holding one unpacked, unregistered path of
// a fixture built on the host.
func lockedNode(t *testing.T, name string) (*testnode.Node, *Store, Registration) {
	t.Helper()
	testnix.Require(t)
	fx := testnode.Chain(t, name, 1, 1, 1024)
	node := testnode.NewNode(t, testnode.NodeOptions{})
	node.ValidPaths(t) // opening the store makes its directories
	ls := &Store{Dir: filepath.Join(node.Root, "nix/store"), StoreArg: node.StoreURI(), Env: node.Env()}
	leaf := fx.Closure[0]
	if _, err := Unpack(ls.RealPath(leaf), bytes.NewReader(dump(t, leaf))); err != nil {
		t.Fatal(err)
	}
	return node, ls, hostRegistration(t, leaf)
}

// TestRegistrarHoldsLocks: the registering process holds the locks of
// its batch, so that they stay held after this process let go of them
// (as its death does) until the registration is over.
func TestRegistrarHoldsLocks(t *testing.T) {
	node, ls, reg := lockedNode(t, "localstore-holds-locks")
	lock, err := TryLock(ls.RealPath(reg.Path))
	if err != nil || lock == nil {
		t.Fatalf("TryLock = %v, %v", lock, err)
	}
	reg.Lock = lock
	r := ls.NewRegistrar(context.Background())
	r.Prepare([]*PathLock{lock})
	lock.Unlock(false) // this process's file is closed: only the child's is left
	if other, err := TryLock(ls.RealPath(reg.Path)); err != nil || other != nil {
		other.Unlock(false)
		t.Fatalf("the lock was free while the registering process ran (%v)", err)
	}
	if err := r.Register([]Registration{reg}); err != nil {
		t.Fatal(err)
	}
	other, err := TryLock(ls.RealPath(reg.Path))
	if err != nil || other == nil {
		t.Fatalf("the lock is still held after the registration: %v, %v", other, err)
	}
	other.Unlock(true)
	if !node.Valid(t, reg.Path) {
		t.Error("not registered")
	}
}

// holdDB holds a write transaction on the node's database until the test
// ends (or release is called), as another Nix process busy writing would.
func holdDB(t *testing.T, node *testnode.Node) (release func()) {
	t.Helper()
	db := filepath.Join(node.Root, "nix/var/nix/db/db.sqlite")
	cmd := exec.Command("sqlite3", db)
	var errs bytes.Buffer
	cmd.Stderr = &errs
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// It waits for the lock, which a probe below may hold for an instant.
	fmt.Fprintln(stdin, ".timeout 10000\nBEGIN IMMEDIATE;")
	done := false
	release = func() {
		if !done {
			done = true
			stdin.Close() // the transaction is rolled back
			cmd.Wait()
		}
	}
	t.Cleanup(release)
	// Its output is buffered: see the lock from outside instead. One
	// statement, with -bail: from 3.53 sqlite3 reports only the last
	// statement's error, not "database is locked".
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := exec.Command("sqlite3", "-bail", db, "BEGIN IMMEDIATE;").CombinedOutput()
		if strings.Contains(string(out), "locked") {
			return release
		}
		if time.Now().After(deadline) {
			release()
			t.Fatalf("sqlite3 did not take the write lock of %s: %s %s", db, out, errs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRegistrarDiesWithParent: a registration waiting for a busy database
// ends when the process that started it is killed, and so commits
// nothing afterwards: nothing else holds the path's lock, and another run
// may remove its files.
func TestRegistrarDiesWithParent(t *testing.T) {
	node, ls, reg := lockedNode(t, "localstore-dies-with-parent")
	release := holdDB(t, node)
	helper := exec.Command(os.Args[0], "-test.run=^TestHelperRegistrar$")
	helper.Env = append(os.Environ(), "LOCALSTORE_HELPER=1",
		"HELPER_DIR="+ls.Dir, "HELPER_STORE="+ls.StoreArg, "HELPER_ENV="+strings.Join(ls.Env, "\n"),
		"HELPER_PATH="+reg.Path, "HELPER_HASH="+reg.NarHash, "HELPER_SIZE="+strconv.FormatUint(reg.NarSize, 10))
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	helper.Stderr = os.Stderr
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { helper.Process.Kill(); helper.Wait() })
	var pid int
	line, err := bufio.NewReader(out).ReadString('\n')
	if _, serr := fmt.Sscanf(line, "nix-store %d", &pid); err != nil || serr != nil {
		t.Fatalf("the helper said %q (%v)", line, err)
	}
	// The helper's Register now waits for the database.
	time.Sleep(300 * time.Millisecond)
	if !alive(pid) {
		t.Fatal("nix-store did not wait for the busy database: the test proves nothing")
	}
	helper.Process.Kill()
	helper.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatal("nix-store --load-db outlived the process that started it")
		}
		time.Sleep(20 * time.Millisecond)
	}
	release()
	if node.Valid(t, reg.Path) {
		t.Error("the orphaned registration committed")
	}
}

// alive reports whether pid runs (a zombie nobody reaps has ended).
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(data), ") ")
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}

// TestHelperRegistrar is the process TestRegistrarDiesWithParent kills:
// it locks the path, starts its registration, says nix-store's pid and
// registers.
func TestHelperRegistrar(t *testing.T) {
	if os.Getenv("LOCALSTORE_HELPER") != "1" {
		t.Skip("run by TestRegistrarDiesWithParent")
	}
	ls := &Store{Dir: os.Getenv("HELPER_DIR"), StoreArg: os.Getenv("HELPER_STORE"), Env: strings.Split(os.Getenv("HELPER_ENV"), "\n")}
	size, _ := strconv.ParseUint(os.Getenv("HELPER_SIZE"), 10, 64)
	reg := Registration{Path: os.Getenv("HELPER_PATH"), NarHash: os.Getenv("HELPER_HASH"), NarSize: size}
	lock, err := TryLock(ls.RealPath(reg.Path))
	if err != nil || lock == nil {
		t.Fatalf("TryLock = %v, %v", lock, err)
	}
	reg.Lock = lock
	r := ls.NewRegistrar(context.Background())
	r.Prepare([]*PathLock{lock})
	fmt.Printf("nix-store %d\n", r.spare.cmd.Process.Pid)
	err = r.Register([]Registration{reg})
	t.Fatalf("Register returned (%v) while the database was busy", err)
}
