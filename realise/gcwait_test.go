package realise

// A real garbage collection in progress while a run roots its closure.

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/internal/testnode"
	"github.com/nix-aurora/nix-aurora/store"
)

// pausedGC starts `nix-store --gc` on the node, held at Nix's test
// synchronisation point, after it has read the roots and the temp roots
// and while it holds the GC lock and serves its socket (Nix 2.8 reads
// _NIX_TEST_GC_SYNC there, 2.20 on _NIX_TEST_GC_SYNC_2). The returned
// function lets it go on and waits for it.
func pausedGC(t *testing.T, node *testnode.Node) (resume func()) {
	t.Helper()
	fifo := filepath.Join(t.TempDir(), "gc-sync")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	gc := exec.Command("nix-store", "--store", node.Root, "--gc")
	gc.Env = append(node.Environ(), "_NIX_TEST_GC_SYNC="+fifo, "_NIX_TEST_GC_SYNC_2="+fifo)
	var out bytes.Buffer
	gc.Stdout, gc.Stderr = &out, &out
	if err := gc.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- gc.Wait() }()
	// The collection is at the synchronisation point once it has the FIFO
	// open for reading: only then does a non-blocking open for writing work.
	var w *os.File
	deadline := time.Now().Add(20 * time.Second)
	for w == nil {
		f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		switch {
		case err == nil:
			w = f
		case !errors.Is(err, syscall.ENXIO):
			t.Fatal(err)
		case time.Now().After(deadline):
			gc.Process.Kill()
			t.Fatalf("nix-store --gc did not reach its synchronisation point:\n%s", &out)
		default:
			select {
			case err := <-exited:
				t.Fatalf("nix-store --gc ended before its synchronisation point (%v):\n%s", err, &out)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	resumed := false
	resume = func() {
		if resumed {
			return
		}
		resumed = true
		w.Close() // end of file: the collection reads it and goes on
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("nix-store --gc: %v\n%s", err, &out)
			}
		case <-time.After(30 * time.Second):
			gc.Process.Kill()
			t.Errorf("nix-store --gc did not end after it was resumed:\n%s", &out)
		}
	}
	t.Cleanup(resume)
	return resume
}

// TestHoldThroughRunningGC: a run that roots its closure while a garbage
// collection is in progress keeps the closure alive, and it waits for that
// collection only where the daemon's Nix needs it (before 2.20: the
// temp roots may not have reached the collection); from 2.20 on it ends
// while the collection is still running.
func TestHoldThroughRunningGC(t *testing.T) {
	w := newDaemonWorld(t, testnode.NodeOptions{})
	fx := testnode.Chain(t, "gc-running", 2, 2, 2048)
	w.node.Copy(t, fx.Root)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	probe, err := store.Dial(ctx, w.node.Socket)
	if err != nil {
		t.Fatal(err)
	}
	version := probe.DaemonVersion()
	probe.Close()
	waits := !tempRootsReachGC(version)
	t.Logf("daemon Nix %q: the run should wait for the collection: %v", version, waits)

	resume := pausedGC(t, w.node)
	type result struct {
		rep *Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := w.realise(t, nil, 20*time.Second, Root{Name: "app", Path: fx.Root})
		done <- result{rep, err}
	}()
	var res result
	if waits {
		select {
		case res = <-done:
			t.Fatalf("the run ended (%v) while a collection that may have missed its roots was in progress", res.err)
		case <-time.After(1500 * time.Millisecond):
		}
		resume()
		select {
		case res = <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("the run did not end after the collection did")
		}
	} else {
		select {
		case res = <-done:
		case <-time.After(15 * time.Second):
			t.Fatal("the run waited for a collection in progress, which its daemon's temp roots reach")
		}
		resume()
	}
	if res.err != nil {
		t.Fatalf("Realise: %v", res.err)
	}
	if !waits && w.log.has("garbage collection") {
		t.Errorf("the run waited for a collection in progress, which its daemon's temp roots reach:\n%s", &w.log)
	}
	if bad := w.node.Invalid(t, fx.Closure...); len(bad) > 0 {
		t.Fatalf("the collection deleted rooted paths: %v", bad)
	}
	// The collection is over: a new one sees the root link.
	w.node.GC(t)
	if bad := w.node.Invalid(t, fx.Closure...); len(bad) > 0 {
		t.Fatalf("a later collection deleted rooted paths: %v", bad)
	}
}
