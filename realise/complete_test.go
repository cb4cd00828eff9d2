package realise

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/binarycache"
	"github.com/nix-aurora/nix-aurora/internal/testnode"
	"github.com/nix-aurora/nix-aurora/localstore"
)

// TestIncompleteClosure: a closure valid in the store with a path deleted
// on disk behind the store's back is not reported done; the error names
// the path and says what to do.
func TestIncompleteClosure(t *testing.T) {
	t.Parallel()
	fx := directFaults(t)
	app := Root{Name: "app", Path: fx.Root}
	leaf := fx.Levels[0][0]
	cache := testnode.NewCache(t, testnode.CacheOptions{}, fx.Root)
	w, d := unpackCase(t, cache)
	if _, err := w.realise(t, d, 30*time.Second, app); err != nil {
		t.Fatal(err)
	}
	if err := localstore.RemoveAll(w.node.Path(leaf)); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(w.gcDir, "app"))
	_, err := w.realise(t, d, 30*time.Second, app)
	var ie *IncompleteError
	if !errors.As(err, &ie) {
		t.Fatalf("err = %v, want an IncompleteError", err)
	}
	if len(ie.Paths) != 1 || ie.Paths[0] != leaf || !strings.Contains(err.Error(), "--verify --repair") {
		t.Errorf("err = %v, want it to name only %s and the repair", err, leaf)
	}
	if Transient(err) {
		t.Error("the error looks transient")
	}
	if _, lerr := os.Lstat(filepath.Join(w.gcDir, "app")); lerr == nil {
		t.Error("the incomplete closure was rooted")
	}
}

// TestFailedRunRemovesLockFiles: a single-user run that fails (a NAR whose
// hash is wrong) leaves no lock file in the store, nor anything invalid.
func TestFailedRunRemovesLockFiles(t *testing.T) {
	t.Parallel()
	fx := directFaults(t)
	app := Root{Name: "app", Path: fx.Root}
	cache := testnode.NewCache(t, testnode.CacheOptions{Compression: "none"}, fx.Root)
	corruptNar(t, cache, fx.Levels[1][0])
	w, d := unpackCase(t, cache)
	if _, err := w.realise(t, d, 30*time.Second, app); !errors.Is(err, binarycache.ErrHashMismatch) {
		t.Fatalf("err = %v, want a hash mismatch", err)
	}
	if locks, _ := filepath.Glob(filepath.Join(w.node.Root, "nix/store/*.lock")); len(locks) > 0 {
		t.Errorf("lock files left after a failed run: %v", locks)
	}
	checkNoGarbage(t, w)
}

// TestRemoveUnregisteredKeepsValid: the files of a path whose registration
// failed are removed only when the store says it is invalid (a nix-store
// killed after its commit made it valid all the same); the lock files go
// either way.
func TestRemoveUnregisteredKeepsValid(t *testing.T) {
	t.Parallel()
	fx := directFaults(t)
	cache := testnode.NewCache(t, testnode.CacheOptions{}, fx.Root)
	w, d := unpackCase(t, cache)
	leaf := fx.Levels[0][0]
	if _, err := w.realise(t, d, 30*time.Second, Root{Name: "leaf", Path: leaf}); err != nil {
		t.Fatal(err)
	}
	// An invalid path, unpacked: what a failed run removes.
	other := fx.Levels[0][1]
	if err := os.MkdirAll(w.node.Path(other), 0o755); err != nil {
		t.Fatal(err)
	}
	var jobs []*localJob
	for _, p := range []string{leaf, other} {
		lock, err := localstore.TryLock(w.node.Path(p))
		if err != nil || lock == nil {
			t.Fatalf("lock %s: %v", p, err)
		}
		jobs = append(jobs, &localJob{pp: binarycache.PlannedPath{Path: p}, lock: lock})
	}
	conn, err := w.connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s := &Session{Conn: conn, Config: &Config{}, report: &Report{}}
	d.removeUnregistered(context.Background(), s, jobs, w.log.logf)
	if _, err := os.Lstat(w.node.Path(leaf)); err != nil {
		t.Errorf("the valid %s was removed: %v", leaf, err)
	}
	if _, err := os.Lstat(w.node.Path(other)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the invalid %s was kept: %v", other, err)
	}
	if locks, _ := filepath.Glob(filepath.Join(w.node.Root, "nix/store/*.lock")); len(locks) > 0 {
		t.Errorf("lock files left: %v", locks)
	}
	w.node.Verify(t)
}
