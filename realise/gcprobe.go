package realise

import (
	"errors"
	"net"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nix-aurora/nix-aurora/store"
)

// gcStateDir is the state directory of the store loc names, when it can be
// known for sure: our own store in single-user mode, or a daemon listening
// at the place Nix puts its socket, <state>/daemon-socket/socket.
func gcStateDir(loc store.Location) (string, bool) {
	switch loc.Mode {
	case store.Local:
		return loc.StateDir(), true
	case store.Daemon:
		dir := filepath.Dir(loc.Socket)
		if filepath.Base(loc.Socket) == "socket" && filepath.Base(dir) == "daemon-socket" {
			return filepath.Dir(dir), true
		}
	}
	return "", false
}

// gcRunning reports whether a garbage collection is in progress in the
// store whose state directory is stateDir, by connecting to the socket
// through which a running GC takes new temp roots: refused (or missing)
// means no GC listens. A GC that took its lock but does not listen yet
// reads the roots only after it listens, so it will see roots registered
// before this probe. known is false when the probe cannot tell.
func gcRunning(stateDir string) (running, known bool) {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.Dial("unix", filepath.Join(stateDir, "gc-socket", "socket"))
	if err == nil {
		c.Close()
		return true, true
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
		return false, true
	}
	return false, false
}
