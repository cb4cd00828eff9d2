package realise

import (
	"net"
	"os"
	"path/filepath"
	"testing"

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
	if running, known := gcRunning(state); running || !known {
		t.Fatalf("no socket: running=%v known=%v", running, known)
	}
	dir := filepath.Join(state, "gc-socket")
	os.MkdirAll(dir, 0o755)
	l, err := net.Listen("unix", filepath.Join(dir, "socket"))
	if err != nil {
		t.Fatal(err)
	}
	if running, known := gcRunning(state); !running || !known {
		t.Fatalf("listening GC: running=%v known=%v", running, known)
	}
	// A GC that ended leaves its socket file behind, with nobody listening.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(filepath.Join(dir, "socket")); err != nil {
		t.Fatal(err)
	}
	if running, known := gcRunning(state); running || !known {
		t.Fatalf("stale socket: running=%v known=%v", running, known)
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
