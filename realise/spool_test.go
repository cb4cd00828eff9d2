package realise

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
