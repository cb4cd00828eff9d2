package realise

// A real garbage collection in progress while a run roots its closure.

import (
	"context"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/internal/testnode"
	"github.com/nix-aurora/nix-aurora/store"
)

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

	resume := w.node.PausedGC(t)
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
