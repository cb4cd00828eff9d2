package main

// End-to-end tests of kill timing and of what a single-user run leaves in
// the store: a registration that outlives a killed run, lock files after a
// failure, a closure whose files were deleted behind the store's back.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/localstore"
)

// singleUserRig is a rig whose node's store belongs to nobody, who runs
// nix-init on it in single-user mode, and the arguments of such a run.
func singleUserRig(t *testing.T, name string) (*rig, []string) {
	t.Helper()
	r := newRig(t, name, rigOptions{noDaemon: true})
	r.node.ValidPaths(t) // opening the store makes its database
	if out, err := exec.Command("chown", "-R", "nobody:", r.node.Root).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	nixDaemon, err := exec.LookPath("nix-daemon")
	if err != nil {
		t.Fatal(err)
	}
	return r, []string{"--substituter", r.cache.URL, "--trusted-public-key", r.cache.PublicKey,
		"--store", r.node.Root, "--nix-daemon", nixDaemon}
}

// holdNodeDB holds a write transaction on the node's database, as the
// store's owner, until release (or the test's end): the database is busy,
// as while another Nix process writes to it.
func holdNodeDB(t *testing.T, r *rig) (release func()) {
	t.Helper()
	db := filepath.Join(r.node.Root, "nix/var/nix/db/db.sqlite")
	cmd := r.sb.Command("sqlite3", db)
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
	released := false
	release = func() {
		if !released {
			released = true
			stdin.Close() // sqlite3 ends and the transaction is rolled back
			cmd.Wait()
		}
	}
	t.Cleanup(func() {
		if t.Failed() && errs.Len() > 0 {
			t.Logf("sqlite3 holding %s: %s", db, errs.String())
		}
	})
	t.Cleanup(release) // first: sqlite3 has ended when errs is read
	// sqlite3 buffers its output: the lock is seen from outside. One
	// statement, with -bail: from 3.53 sqlite3 reports only the last
	// statement's error, not "database is locked".
	waitFor(t, 10*time.Second, "sqlite3's write lock on "+db, func() bool {
		out, _ := r.sb.Command("sqlite3", "-bail", db, "BEGIN IMMEDIATE;").CombinedOutput()
		return strings.Contains(string(out), "locked")
	})
	return release
}

// loadDBs are the pids of the `nix-store --load-db` processes on root's
// store.
func loadDBs(root string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(data), "\x00")
		hasLoad, hasRoot := false, false
		for _, a := range args {
			hasLoad = hasLoad || a == "--load-db"
			hasRoot = hasRoot || a == root
		}
		if hasLoad && hasRoot && !zombie(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// zombie reports whether pid has ended and waits to be reaped (by an init
// that may never do it).
func zombie(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	_, rest, _ := strings.Cut(string(data), ") ")
	return strings.HasPrefix(rest, "Z") || strings.HasPrefix(rest, "X")
}

// checkComplete checks that every valid path of the node has its files,
// that the store verifies, and that no lock file is left.
func checkComplete(t *testing.T, r *rig) {
	t.Helper()
	for _, p := range r.node.ValidPaths(t) {
		if _, err := os.Lstat(r.node.Path(p)); err != nil {
			t.Errorf("%s is valid with nothing on disk: %v", p, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	r.node.Verify(t)
	if locks, _ := filepath.Glob(filepath.Join(r.node.Root, "nix/store/*.lock")); len(locks) > 0 {
		t.Errorf("lock files left: %v", locks)
	}
}

// TestKilledWhileDatabaseBusy: nix-init is SIGKILLed while its
// registration waits for a database another process holds busy. A second
// run then takes the paths over and fails (its own registration waits
// too, past its --timeout), the database is released, and a third run
// succeeds: no path may be valid without its files (the killed run's
// registration must not commit after the second run removed them).
func TestKilledWhileDatabaseBusy(t *testing.T) {
	t.Parallel()
	r, args := singleUserRig(t, "killsafe-busy-db")
	args = append(args, "app="+r.fx.Root)
	release := holdNodeDB(t, r)

	first := start(t, r.cmd(args...))
	waitFor(t, 20*time.Second, "the first run's unpacked closure and its registration", func() bool {
		for _, p := range r.fx.Closure {
			if _, err := os.Lstat(r.node.Path(p)); err != nil {
				return false
			}
		}
		return len(loadDBs(r.node.Root)) > 0
	})
	time.Sleep(500 * time.Millisecond) // the batch is written: nix-store waits for the database
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.done

	second := runInit(t, r.cmd(append([]string{"--timeout", "2s"}, args...)...), 60*time.Second)
	if second.code == exitOK {
		t.Fatal("the second run succeeded while the database was busy: the test proves nothing")
	}
	release()
	// A registration still running (the first run's) ends once it has
	// the database.
	waitFor(t, 20*time.Second, "the end of every nix-store --load-db", func() bool { return len(loadDBs(r.node.Root)) == 0 })

	third := runInit(t, r.cmd(args...), 60*time.Second)
	wantCode(t, third, exitOK)
	checkComplete(t, r)
	if bad := r.node.Invalid(t, r.fx.Closure...); len(bad) > 0 {
		t.Errorf("not valid after the third run: %v", bad)
	}
	r.checkRooted(t, "app", r.fx.Root)
}

// TestFailedRunLeavesNoLockFile: a single-user run that fails (a NAR
// that does not match its hash) removes the lock files it created.
func TestFailedRunLeavesNoLockFile(t *testing.T) {
	t.Parallel()
	r, args := singleUserRig(t, "killsafe-lock-files")
	file := r.cache.NarFile(t, r.fx.Levels[1][0])
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x55
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	res := runInit(t, r.cmd(append(args, "app="+r.fx.Root)...), 30*time.Second)
	wantCode(t, res, exitPermanent)
	checkComplete(t, r)
}

// TestDeletedPathFails: when a path of a valid closure was deleted on disk
// behind the store's back, nix-init fails, naming it and the repair,
// instead of rooting a closure that cannot run.
func TestDeletedPathFails(t *testing.T) {
	t.Parallel()
	r, args := singleUserRig(t, "killsafe-deleted")
	args = append(args, "app="+r.fx.Root)
	wantCode(t, runInit(t, r.cmd(args...), 30*time.Second), exitOK)
	gone := r.fx.Levels[0][0]
	if err := localstore.RemoveAll(r.node.Path(gone)); err != nil {
		t.Fatal(err)
	}
	res := runInit(t, r.cmd(args...), 30*time.Second)
	wantCode(t, res, exitPermanent)
	if !strings.Contains(res.stderr, gone) || !strings.Contains(res.stderr, "nix-store --verify --repair") {
		t.Errorf("the error does not name %s and the repair", gone)
	}
}
