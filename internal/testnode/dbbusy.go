package testnode

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// HoldDB holds a write transaction on the node's SQLite database with the
// sqlite3 CLI until release is called or the test ends: the database is
// busy, as while another Nix process writes to it. It is for tests of what
// a run does, or leaves behind, when it must wait for the database (and is
// killed meanwhile). command makes the sqlite3 commands, so that they can
// run as the store's owner (a Sandbox's Command, say); nil is
// exec.Command, as the test process. It returns once the lock is seen
// taken.
func (n *Node) HoldDB(t testing.TB, command func(name string, args ...string) *exec.Cmd) (release func()) {
	t.Helper()
	if command == nil {
		command = exec.Command
	}
	db := filepath.Join(n.Root, "nix/var/nix/db/db.sqlite")
	cmd := command("sqlite3", db)
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
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := command("sqlite3", "-bail", db, "BEGIN IMMEDIATE;").CombinedOutput()
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
