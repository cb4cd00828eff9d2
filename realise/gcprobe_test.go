package realise

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/store"
)

func TestGCStateDir(t *testing.T) {
	cases := []struct {
		loc  store.Location
		want string
		ok   bool
	}{
		{store.Location{Mode: store.Daemon, Socket: "/nix/var/nix/daemon-socket/socket"}, "/nix/var/nix", true},
		{store.Location{Mode: store.Daemon, Socket: "/srv/nix/var/nix/daemon-socket/socket"}, "/srv/nix/var/nix", true},
		{store.Location{Mode: store.Daemon, Socket: "/tmp/node/daemon/socket"}, "", false},
		{store.Location{Mode: store.Local}, "/nix/var/nix", true},
		{store.Location{Mode: store.Local, Root: "/tmp/node"}, "/tmp/node/nix/var/nix", true},
	}
	for _, c := range cases {
		got, ok := gcStateDir(c.loc)
		if got != c.want || ok != c.ok {
			t.Errorf("gcStateDir(%+v) = %q, %v; want %q, %v", c.loc, got, ok, c.want, c.ok)
		}
	}
}

func TestGCRunning(t *testing.T) {
	state := t.TempDir()
	if held, running, known := gcRunning(state); held != nil || running || !known {
		t.Fatalf("no socket: held=%v running=%v known=%v", held, running, known)
	}
	dir := filepath.Join(state, "gc-socket")
	os.MkdirAll(dir, 0o755)
	l, err := net.Listen("unix", filepath.Join(dir, "socket"))
	if err != nil {
		t.Fatal(err)
	}
	held, running, known := gcRunning(state)
	if !running || !known || held == nil {
		t.Fatalf("listening GC: held=%v running=%v known=%v", held, running, known)
	}
	// The collection's side of the probe sees no end of input until the
	// caller lets go (a probe that hung up at once could abort Nix's GC).
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	server.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := server.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the probe's connection before it is released: read %v, want a timeout", err)
	}
	held.Close()
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := server.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the probe's connection once released: read %v, want EOF", err)
	}
	// A GC that ended leaves its socket file behind, with nobody listening.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(filepath.Join(dir, "socket")); err != nil {
		t.Fatal(err)
	}
	if held, running, known := gcRunning(state); held != nil || running || !known {
		t.Fatalf("stale socket: held=%v running=%v known=%v", held, running, known)
	}
}

// TestTempRootsReachGC: the versions daemons report in the handshake
// (Nix 2.8 to 2.34, pre-releases, Lix), and what they say of the wait.
func TestTempRootsReachGC(t *testing.T) {
	for _, c := range []struct {
		version string
		want    bool
	}{
		{"2.8.0", false},
		{"2.18.9", false},
		{"2.19.7", false},
		{"2.20.0pre20240115_dirty", false}, // master before the change was merged
		{"2.20.0", true},
		{"2.26.3", true},
		{"2.34.8", true},
		{"2.93.0", true},                // Lix
		{"2.94.0-devpre20250101", true}, // Lix development build
		{"3.0.0", true},
		{"", false}, // protocol < 1.33
		{"2", false},
		{"2.x", false},
		{"nix 2.26.3", false},
	} {
		if got := tempRootsReachGC(c.version); got != c.want {
			t.Errorf("tempRootsReachGC(%q) = %v, want %v", c.version, got, c.want)
		}
	}
}
