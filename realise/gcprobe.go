package realise

import (
	"errors"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
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
//
// When a GC listens, the probe's connection is returned open, and the
// caller closes it once done with that collection, as Nix's own clients
// keep theirs. A connection closed at once can end the collection's client
// thread before the collection records it, and the next client given the
// same descriptor number then aborts the whole collection ("terminate
// called without an active exception": Nix's gc.cc keys its threads by
// descriptor, from 2.8 to 2.34 at least; seen with 2.26).
func gcRunning(stateDir string) (held io.Closer, running, known bool) {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.Dial("unix", filepath.Join(stateDir, "gc-socket", "socket"))
	if err == nil {
		return c, true, true
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
		return nil, false, true
	}
	return nil, false, false
}

// tempRootsReachGC reports whether a daemon of this Nix version, asked
// for a temp root while a garbage collection holds the GC lock, is sure
// to hand it to that collection. Since Nix 2.20 addTempRoot retries, every
// 100 ms, until the collection's socket takes the root. Before, a worker
// that found the lock held but the socket not yet there (the instant after
// a GC takes its lock) ignored the error, kept the unconnected socket and
// never told any collection again. Lix, forked from Nix 2.18 and numbered
// from 2.90, has the retry in every release. A pre-release ("2.20.0pre…")
// may predate the change and counts as the version before; an unknown
// version (protocol < 1.33 does not say) counts as old.
func tempRootsReachGC(version string) bool {
	major, minor, ok := nixVersion(version)
	if !ok {
		return false
	}
	return major > 2 || major == 2 && minor >= 20
}

// nixVersion reads major and minor from the version a daemon reports:
// "2.26.3", "2.20.0pre20240115_dirty", Lix's "2.93.0" or "2.94.0-devpre…".
// A pre-release counts as the release before it.
func nixVersion(s string) (major, minor int, ok bool) {
	fields := strings.SplitN(s, ".", 3)
	if len(fields) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(fields[0])
	digits := strings.IndexFunc(fields[1], func(r rune) bool { return r < '0' || r > '9' })
	rest := ""
	if digits >= 0 {
		fields[1], rest = fields[1][:digits], fields[1][digits:]
	}
	minor, err2 := strconv.Atoi(fields[1])
	if err1 != nil || err2 != nil || major < 0 || minor < 0 {
		return 0, 0, false
	}
	if len(fields) == 3 {
		rest += fields[2]
	}
	if strings.Contains(rest, "pre") {
		if minor == 0 {
			return 0, 0, false
		}
		minor--
	}
	return major, minor, true
}
