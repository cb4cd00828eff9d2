package realise

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/nix-aurora/nix-aurora/store"
)

// claims lets the nix-init runs of one node share the work of a cold
// start: a root is realised by one run while the others wait for it
// (substituteShared), and within plans a path is fetched and imported by
// one run while the others wait for it to become valid (awaitOthers),
// instead of downloading it again and queueing on the daemon's lock of
// the same path.
//
// A claim is a listening socket in Linux's abstract namespace, named after
// the store and the path's hash part: binding it is atomic and exclusive,
// the kernel releases it when its run ends however it ends, and a waiter
// connects to it and learns of the release when its connection is reset.
// Runs in other network namespaces do not see each other's claims and
// simply do the work themselves. Nothing is trusted from a claim: a waiter
// asks the store whether the path became valid, and fetches it itself
// when it did not (or when it has waited claimWait).
type claims struct {
	prefix string // "@nix-init/<store id>/"
	wait   time.Duration
}

// claimWait bounds how long a run waits for another run's claim before
// fetching the path itself (a stuck or hostile claimant costs time, never
// correctness).
const claimWait = 2 * time.Minute

// newClaims returns the claims of the store at loc.
func newClaims(loc store.Location) *claims {
	id := loc.Mode.String() + "\x00" + loc.Socket + "\x00" + loc.Store + "\x00" + loc.Root
	sum := sha256.Sum256([]byte(id))
	return &claims{prefix: "@nix-init/" + hex.EncodeToString(sum[:8]) + "/", wait: claimWait}
}

// rootKey is the claim on realising a root as a whole, apart from the
// claim on fetching the path itself (another run's plan may hold that).
func rootKey(storePath string) string { return "root:" + storePath }

func (c *claims) name(key string) string {
	if key == importLockName {
		return c.prefix + importLockName
	}
	kind, storePath, isRoot := strings.Cut(key, ":")
	if !isRoot {
		kind, storePath = "", key
	}
	base := path.Base(storePath)
	if i := strings.IndexByte(base, '-'); i > 0 {
		base = base[:i]
	}
	return c.prefix + kind + base
}

// try claims storePath for this run. It returns nil when another run holds
// the claim; the error is for claims that cannot work at all here (then
// the run proceeds without them).
func (c *claims) try(storePath string) (*claim, error) {
	l, err := net.Listen("unix", c.name(storePath))
	if err == nil {
		return &claim{l: l}, nil
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, nil
	}
	return nil, fmt.Errorf("claim %s: %w", storePath, err)
}

// waitFor waits until no run holds storePath's claim, and reports whether
// that happened: false when it gave up after c.wait, or ctx ended.
func (c *claims) waitFor(ctx context.Context, storePath string) bool {
	ctx, cancel := context.WithTimeout(ctx, c.wait)
	defer cancel()
	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, "unix", c.name(storePath))
		switch {
		case err == nil:
			stop := context.AfterFunc(ctx, func() { conn.Close() })
			var b [1]byte
			conn.Read(b[:]) // returns when the claimant closes its socket
			stop()
			conn.Close()
			return ctx.Err() == nil
		case ctx.Err() != nil:
			return false
		case errors.Is(err, syscall.EAGAIN):
			// The claimant's backlog is full: it is still there.
			select {
			case <-time.After(5 * time.Millisecond):
			case <-ctx.Done():
				return false
			}
		default:
			return true // refused: released
		}
	}
}

// importLockName is the claim that serialises imports across runs: on Nix
// 2.8, imports through separate daemon connections contend (one
// connection imported a cold 400-path closure in 0.57 s, two in 1.0 s),
// and 32 runs importing at once took 7.7 s for what one does in 0.6 s.
const importLockName = "import"

// lockImports waits until this run may import, and returns the release.
func (c *claims) lockImports(ctx context.Context) (func(), error) {
	for {
		l, err := net.Listen("unix", c.prefix+importLockName)
		if err == nil {
			return func() { l.Close() }, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return func() {}, nil // no claims here: import anyway
		}
		if !c.waitFor(ctx, importLockName) {
			if ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			return func() {}, nil // held too long: import anyway
		}
	}
}

// claim is a path this run fetches.
type claim struct{ l net.Listener }

// release lets the waiting runs go on.
func (c *claim) release() {
	if c != nil && c.l != nil {
		c.l.Close()
		c.l = nil
	}
}
