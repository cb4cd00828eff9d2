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
	"github.com/nix-aurora/nix-aurora/nar"
)

// unpackCase is a fresh single-user node and a Direct that unpacks into
// its store (what nix-init does in single-user mode).
func unpackCase(t *testing.T, cache *testnode.Cache) (*directWorld, *Direct) {
	t.Helper()
	w := newSingleUserWorld(t, testnode.NodeOptions{})
	w.node.ValidPaths(t) // opening the store makes its directories
	d := &Direct{
		URLs:    []string{cache.URL},
		Options: cacheOptions(t, cache.PublicKey),
		Local:   &localstore.Store{Dir: filepath.Join(w.node.Root, "nix/store"), StoreArg: w.node.StoreURI(), Env: w.node.Env()},
	}
	return w, d
}

// checkNoGarbage checks that the node's store directory holds nothing but
// valid paths (and lock files, which Nix too leaves after a failure).
func checkNoGarbage(t *testing.T, w *directWorld) {
	t.Helper()
	valid := map[string]bool{}
	for _, p := range w.node.ValidPaths(t) {
		valid[filepath.Base(p)] = true
	}
	entries, err := os.ReadDir(filepath.Join(w.node.Root, "nix/store"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if n := e.Name(); !valid[n] && !strings.HasSuffix(n, ".lock") && n != ".links" {
			t.Errorf("the store directory holds %s, which is not valid", n)
		}
	}
}

// TestDirectUnpack: in single-user mode, NARs are unpacked straight into
// the store and registered a batch per transaction; the store verifies, faults
// leave nothing unverified behind, and Nix's path locks are honoured.
func TestDirectUnpack(t *testing.T) {
	t.Parallel()
	fx := directFaults(t)
	app := Root{Name: "app", Path: fx.Root}
	leaf := fx.Levels[0][0]

	t.Run("success", func(t *testing.T) {
		t.Parallel()
		cache := testnode.NewCache(t, testnode.CacheOptions{Compression: "xz"}, fx.Root)
		w, d := unpackCase(t, cache)
		rep, err := w.realise(t, d, 30*time.Second, app)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Substituted) != len(fx.Closure) {
			t.Errorf("substituted %d paths, want %d", len(rep.Substituted), len(fx.Closure))
		}
		checkStore(t, w.node, fx.Closure)
		checkNoGarbage(t, w)
		if locks, _ := filepath.Glob(filepath.Join(w.node.Root, "nix/store/*.lock")); len(locks) > 0 {
			t.Errorf("lock files left after a successful run: %v", locks)
		}
		if w.connects.Load() != 1 {
			t.Errorf("%d store connections, want 1", w.connects.Load())
		}
		// The store keeps the cache's signatures, as after Nix's own
		// substitution.
		conn, err := w.connect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, p := range fx.Closure {
			info, err := conn.QueryPathInfo(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			if len(info.Sigs) != 1 || !strings.HasPrefix(info.Sigs[0], cache.KeyName+":") {
				t.Errorf("%s: signatures %q, want the cache's", p, info.Sigs)
			}
		}
	})

	t.Run("transient faults", func(t *testing.T) {
		t.Parallel()
		cache := testnode.NewCache(t, testnode.CacheOptions{}, fx.Root)
		w, d := unpackCase(t, cache)
		cache.Drop("/nar/", 2)
		cache.FailMatching("/nar/", 503, 2)
		if _, err := w.realise(t, d, 30*time.Second, app); err != nil {
			t.Fatal(err)
		}
		checkStore(t, w.node, fx.Closure)
		checkNoGarbage(t, w)
	})

	t.Run("hash mismatch", func(t *testing.T) {
		t.Parallel()
		cache := testnode.NewCache(t, testnode.CacheOptions{Compression: "none"}, fx.Root)
		corruptNar(t, cache, leaf)
		w, d := unpackCase(t, cache)
		rep, err := w.realise(t, d, 30*time.Second, app)
		checkRefused(t, w, fx, rep, err, leaf)
		if !errors.Is(err, binarycache.ErrHashMismatch) || !strings.Contains(err.Error(), cache.URL) {
			t.Errorf("err = %v", err)
		}
		checkNoGarbage(t, w)
	})

	t.Run("hostile NAR", func(t *testing.T) {
		t.Parallel()
		cache := testnode.NewCache(t, testnode.CacheOptions{}, fx.Root)
		replaceNar(t, cache, leaf, rawNar(nar.Magic, "(", "type", "directory",
			"entry", "(", "name", "..", "node", "(", "type", "regular", "contents", "pwned\n", ")", ")", ")"))
		w, d := unpackCase(t, cache)
		rep, err := w.realise(t, d, 30*time.Second, app)
		checkRefused(t, w, fx, rep, err, leaf)
		if !errors.Is(err, nar.ErrInvalid) {
			t.Errorf("err = %v", err)
		}
		checkNoGarbage(t, w)
		if _, err := os.Lstat(filepath.Join(w.node.Root, "nix", "pwned")); err == nil {
			t.Error("the NAR wrote outside its path")
		}
	})

	t.Run("leftovers of a killed import", func(t *testing.T) {
		t.Parallel()
		cache := testnode.NewCache(t, testnode.CacheOptions{}, fx.Root)
		w, d := unpackCase(t, cache)
		// What a run killed mid-unpack leaves: a partial, read-only tree
		// and its lock file.
		real := w.node.Path(leaf)
		if err := os.MkdirAll(filepath.Join(real, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(real, "sub", "junk"), []byte("partial"), 0o444); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(real, "sub"), 0o555)
		os.Chmod(real, 0o555)
		if err := os.WriteFile(real+".lock", nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := w.realise(t, d, 30*time.Second, app); err != nil {
			t.Fatal(err)
		}
		checkStore(t, w.node, fx.Closure)
		checkNoGarbage(t, w)
	})

	t.Run("reference collected meanwhile", func(t *testing.T) {
		t.Parallel()
		cache := testnode.NewCache(t, testnode.CacheOptions{}, fx.Root)
		w, d := unpackCase(t, cache)
		// The leaf is valid when the plan is made, so it is not planned;
		// a GC takes it while the rest downloads. Registering its
		// referrers then fails, and planning again heals it.
		w.node.Copy(t, leaf)
		cache.StallBodyMatching("/nar/", time.Second)
		type result struct {
			rep *Report
			err error
		}
		done := make(chan result, 1)
		go func() {
			rep, err := w.realise(t, d, 30*time.Second, app)
			done <- result{rep, err}
		}()
		deadline := time.Now().Add(15 * time.Second)
		for cache.Count("/nar/") == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		w.node.NixStore(t, "--delete", leaf)
		cache.StallBody(0)
		r := <-done
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.rep.Retries == 0 {
			t.Errorf("no retry: the collected reference did not make the first attempt fail")
		}
		checkStore(t, w.node, fx.Closure)
		checkNoGarbage(t, w)
	})

	t.Run("path locked by another process", func(t *testing.T) {
		t.Parallel()
		cache := testnode.NewCache(t, testnode.CacheOptions{}, fx.Root)
		w, d := unpackCase(t, cache)
		// Another process (Nix substituting it) holds the leaf's lock,
		// then gives up without making it valid: nix-init waits, then
		// fetches it itself.
		held, err := localstore.TryLock(w.node.Path(leaf))
		if err != nil || held == nil {
			t.Fatalf("lock: %v", err)
		}
		const hold = 400 * time.Millisecond
		go func() {
			time.Sleep(hold)
			held.Unlock(false)
		}()
		start := time.Now()
		rep, err := w.realise(t, d, 30*time.Second, app)
		if err != nil {
			t.Fatal(err)
		}
		if elapsed := time.Since(start); elapsed < hold {
			t.Errorf("done in %s, before the lock was released", elapsed)
		}
		if len(rep.Substituted) != len(fx.Closure) {
			t.Errorf("substituted %d paths, want %d", len(rep.Substituted), len(fx.Closure))
		}
		checkStore(t, w.node, fx.Closure)
		checkNoGarbage(t, w)
	})
}
