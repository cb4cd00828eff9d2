package realise

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nix-aurora/nix-aurora/binarycache"
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
// when it did not.
//
// The names are computable, so any local user can bind one first. A claim
// is honoured only when its listener runs as this run's uid or as the
// store's owner (see trustedUIDs), which the kernel tells a connecting
// waiter (SO_PEERCRED gives the listener's credentials of listen(), before
// any accept). Anything else is ignored at once and the run does the work
// itself: a listener of another user, one that accepts (a claimant never
// does, so its release resets the connection rather than ending it) or
// sends data, a backlog too full to connect. A name found not to be a
// claim is not looked at again in the run, so a squatter gets one
// connection per name and run.
//
// The bound: another local user who squats every claim name (a root and
// a path claim per missing path, and the import claim), in any way, costs
// a run one connect per name, answered at once by the kernel (claimRounds
// of them, and as many batched validity queries, when the name is bound
// without listening), and makes it do the work itself as if it ran alone.
// Only runs of the same user and the store's owner can make a run wait,
// and then for claimWait in all, whatever the number of paths.
type claims struct {
	prefix  string // "@nix-init/<store id>/"
	trusted []uint32
	run     *claimRun
	logf    func(string, ...any)
}

// claimWait bounds the time a run spends waiting for other runs' claims,
// all its waits together (a stuck trusted claimant costs time, never
// correctness; an untrusted one is not waited for).
const claimWait = 2 * time.Minute

// claimRounds bounds the times a run looks again at a claim name found in
// use with nobody listening on it: a claimant released it meanwhile, or a
// socket was bound without listening, which would otherwise send the run
// round in a loop.
const claimRounds = 3

// claimRun is what the claims of one run share over its Substitute calls.
type claimRun struct {
	mu     sync.Mutex
	limit  time.Duration // the waiting budget; 0: claimWait
	used   time.Duration // waited before the current waits
	active int           // waits in progress
	since  time.Time     // when the current waits began
	// ignored are the claim names found not to be claims: not looked at
	// again.
	ignored map[string]bool
	said    bool // logged the first of them
}

// startWait accounts a wait: the time during which at least one wait is in
// progress comes out of the budget. It returns the deadline of the wait
// and its end, or false when the budget is spent.
func (r *claimRun) startWait() (time.Time, func(), bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	spent := r.used
	if r.active > 0 {
		spent += now.Sub(r.since)
	}
	left := cmp.Or(r.limit, claimWait) - spent
	if left <= 0 {
		return time.Time{}, nil, false
	}
	if r.active == 0 {
		r.since = now
	}
	r.active++
	return now.Add(left), func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.active--; r.active == 0 {
			r.used += time.Since(r.since)
		}
	}, true
}

func (r *claimRun) isIgnored(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ignored[name]
}

// ignore marks name as no claim, and reports whether it is the run's
// first.
func (r *claimRun) ignore(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ignored == nil {
		r.ignored = map[string]bool{}
	}
	r.ignored[name] = true
	first := !r.said
	r.said = true
	return first
}

// notClaim ignores name for the rest of the run, saying why the first
// time: an operator sees that another user squats the names.
func (c *claims) notClaim(key, name, why string) {
	if c.run.ignore(name) && c.logf != nil {
		c.logf("ignoring the claim on %s (socket %s): %s; this run does the work itself", key, name, why)
	}
}

// newClaims returns the claims of the store at loc, for the run run,
// logging to logf.
func newClaims(loc store.Location, run *claimRun, logf func(string, ...any)) *claims {
	return &claims{prefix: claimPrefix(loc), trusted: trustedUIDs(loc), run: run, logf: logf}
}

func claimPrefix(loc store.Location) string {
	id := loc.Mode.String() + "\x00" + loc.Socket + "\x00" + loc.Store + "\x00" + loc.Root
	sum := sha256.Sum256([]byte(id))
	return "@nix-init/" + hex.EncodeToString(sum[:8]) + "/"
}

// trustedUIDs are the users whose claims a run honours: itself, and the
// store's owner, who can delay every run anyway (root for a daemon's
// store; in single-user mode, the owner of the store directory).
func trustedUIDs(loc store.Location) []uint32 {
	uids := []uint32{uint32(os.Getuid())}
	switch loc.Mode {
	case store.Daemon:
		uids = append(uids, 0)
	case store.Local:
		if fi, err := os.Stat(filepath.Join("/", loc.Root, binarycache.StoreDir)); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				uids = append(uids, st.Uid)
			}
		}
	}
	return uids
}

// ClaimNames are the abstract unix socket addresses ("@" for the leading
// NUL) of the claims runs on the store at loc use for paths: the root, the
// path and the import claims. Any local user can compute them; they are
// listed for diagnostics and for tests that squat them.
func ClaimNames(loc store.Location, paths []string) []string {
	c := &claims{prefix: claimPrefix(loc)}
	names := []string{c.name(importLockName)}
	for _, p := range paths {
		names = append(names, c.name(rootKey(p)), c.name(p))
	}
	return names
}

// rootKey is the claim on realising a root as a whole, apart from the
// claim on fetching the path itself (another run's plan may hold that).
func rootKey(storePath string) string { return "root:" + storePath }

func (c *claims) name(key string) string {
	if key == importLockName || strings.HasPrefix(key, importLockName+".") {
		return c.prefix + key
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

// waitOutcome is how a wait for a claim ended.
type waitOutcome int

const (
	// claimReleased: a trusted claimant ended its claim.
	claimReleased waitOutcome = iota
	// claimGone: nobody listens on the name: released before the waiter
	// looked, or bound by a socket that does not listen.
	claimGone
	// claimIgnored: not waited for, or no longer (see claims): do the work
	// without the claim.
	claimIgnored
)

// waitFor waits until the trusted run holding key's claim releases it, and
// says how the wait ended. It never retries: a caller looking again after
// claimGone must bound its rounds (claimRounds).
func (c *claims) waitFor(ctx context.Context, key string) waitOutcome {
	name := c.name(key)
	if c.run.isIgnored(name) {
		return claimIgnored
	}
	deadline, end, ok := c.run.startWait()
	if !ok {
		return claimIgnored
	}
	defer end()
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", name)
	switch {
	case err == nil:
	case errors.Is(err, syscall.ECONNREFUSED):
		return claimGone
	default:
		// EAGAIN: the backlog is full, so the listener does not accept;
		// a real claimant has one of somaxconn, more than a node's runs.
		c.notClaim(key, name, fmt.Sprintf("cannot connect to it (%v)", err))
		return claimIgnored
	}
	defer conn.Close()
	uid, err := peerUID(conn)
	if err != nil {
		c.notClaim(key, name, err.Error())
		return claimIgnored
	}
	if !c.trusts(uid) {
		c.notClaim(key, name, fmt.Sprintf("held by uid %d, neither this run's user nor the store's owner", uid))
		return claimIgnored
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var b [1]byte
	n, err := conn.Read(b[:]) // returns when the claimant closes its socket
	switch {
	case ctx.Err() != nil:
		return claimIgnored
	case n == 0 && errors.Is(err, syscall.ECONNRESET):
		// A listener closed with our connection not accepted.
		return claimReleased
	case n > 0:
		c.notClaim(key, name, "its holder sent data, which a claimant never does")
		return claimIgnored
	default:
		// A claimant never accepts.
		c.notClaim(key, name, fmt.Sprintf("its holder accepted the connection, which a claimant never does (%v)", err))
		return claimIgnored
	}
}

// peerUID is the uid the listener at the other end of conn had when it
// listened.
func peerUID(conn net.Conn) (uint32, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return 0, fmt.Errorf("not a unix socket: %T", conn)
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("read its holder's credentials: %w", err)
	}
	var cred *syscall.Ucred
	var credErr error
	if err := rc.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, fmt.Errorf("read its holder's credentials: %w", err)
	}
	if credErr != nil {
		return 0, fmt.Errorf("read its holder's credentials: %w", credErr)
	}
	return cred.Uid, nil
}

// trusts reports whether a claim held by uid is honoured.
func (c *claims) trusts(uid uint32) bool {
	return slices.Contains(c.trusted, uid)
}

// importLockName is the claim that serialises imports across runs: on Nix
// 2.8, imports through separate daemon connections contend (one
// connection imported a cold 400-path closure in 0.57 s, two in 1.0 s),
// and 32 runs importing at once took 7.7 s for what one does in 0.6 s.
// With parallel imports (Direct.Imports above 1) there are as many slots,
// the first named importLockName, the others importLockName.N.
const importLockName = "import"

func importSlotName(i int) string {
	if i == 0 {
		return importLockName
	}
	return fmt.Sprintf("%s.%d", importLockName, i)
}

// lockImports waits until this run may import on one of slots import
// slots, and returns the release. It imports without the lock when the
// lock is not a trusted claim.
func (c *claims) lockImports(ctx context.Context, slots int) (func(), error) {
	slots = max(slots, 1)
	for gone, round := 0, 0; ; round++ {
		for i := range slots {
			l, err := net.Listen("unix", c.name(importSlotName(i)))
			if err == nil {
				return func() { l.Close() }, nil
			}
			if !errors.Is(err, syscall.EADDRINUSE) {
				return func() {}, nil // no claims here: import anyway
			}
		}
		switch c.waitFor(ctx, importSlotName(round%slots)) {
		case claimReleased: // try again
		case claimGone:
			if gone++; gone >= claimRounds*slots {
				return func() {}, nil
			}
		default:
			if ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			return func() {}, nil // held too long, or not a claim: import anyway
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
