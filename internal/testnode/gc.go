package testnode

// A real garbage collection, held in progress.

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// PausedGC starts `nix-store --gc` on the node, held at Nix's test
// synchronisation point, after it has read the roots and the temp roots
// and while it holds the GC lock and serves its socket (Nix 2.8 reads
// _NIX_TEST_GC_SYNC there, 2.20 on _NIX_TEST_GC_SYNC_2). The returned
// function lets it go on and waits for it.
func (n *Node) PausedGC(t testing.TB) (resume func()) {
	t.Helper()
	fifo := filepath.Join(t.TempDir(), "gc-sync")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	gc := exec.Command("nix-store", "--store", n.Root, "--gc")
	gc.Env = append(n.Environ(), "_NIX_TEST_GC_SYNC="+fifo, "_NIX_TEST_GC_SYNC_2="+fifo)
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
			t.Fatalf("testnode: nix-store --gc did not reach its synchronisation point:\n%s", &out)
		default:
			select {
			case err := <-exited:
				t.Fatalf("testnode: nix-store --gc ended before its synchronisation point (%v):\n%s", err, &out)
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
				t.Errorf("testnode: nix-store --gc: %v\n%s", err, &out)
			}
		case <-time.After(30 * time.Second):
			gc.Process.Kill()
			t.Errorf("testnode: nix-store --gc did not end after it was resumed:\n%s", &out)
		}
	}
	t.Cleanup(resume)
	return resume
}
