package realise

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/internal/testnode"
)

// TestAnonymousFile: a spool file can be written and read back through its
// descriptor, and never has a name in its directory.
func TestAnonymousFile(t *testing.T) {
	dir := t.TempDir()
	f, err := anonymousFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the spool file has a name: %v", entries)
	}
	data := bytes.Repeat([]byte("nar "), 1<<16)
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes (%v), want %d", len(got), err, len(data))
	}
	missing := filepath.Join(dir, "missing")
	if _, err := anonymousFile(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("in a missing directory: %v", err)
	}
}

// TestDirectSpoolsLargeNARsToDisk: NARs too large for the memory budget
// wait in temporary files in TempDir, which have no name there (they are
// seen as this process's open files) and are gone after their import.
func TestDirectSpoolsLargeNARsToDisk(t *testing.T) {
	t.Parallel()
	fx := testnode.Chain(t, "direct-spool", 3, 3, 64<<10)
	cache := testnode.NewCache(t, testnode.CacheOptions{}, fx.Root)
	w := newDaemonWorld(t, testnode.NodeOptions{TrustedPublicKeys: []string{cache.PublicKey}})
	tmp := t.TempDir()
	// 64 KiB NARs, a 128 KiB budget: each is more than a quarter of it.
	d := &Direct{URLs: []string{cache.URL}, Options: cacheOptions(t, cache.PublicKey), Memory: 128 << 10, TempDir: tmp}
	done, seen := make(chan struct{}), make(chan int, 1)
	go func() {
		most := 0
		defer func() { seen <- most }()
		for {
			most = max(most, openFilesIn(tmp))
			if entries, _ := os.ReadDir(tmp); len(entries) > 0 {
				t.Errorf("a spool file has a name: %s", entries[0].Name())
			}
			select {
			case <-done:
				return
			case <-time.After(200 * time.Microsecond):
			}
		}
	}()
	_, err := w.realise(t, d, 30*time.Second, Root{Name: "app", Path: fx.Root})
	close(done)
	if err != nil {
		t.Fatal(err)
	}
	checkStore(t, w.node, fx.Closure)
	checkEmpty(t, tmp)
	if most := <-seen; most == 0 {
		t.Errorf("no temporary file seen in %s during the run", tmp)
	}
}

// openFilesIn counts this process's open files under dir.
func openFilesIn(dir string) int {
	fds, _ := os.ReadDir("/proc/self/fd")
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(target, dir+"/") {
			n++
		}
	}
	return n
}
