package realise

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/internal/testnix"
	"github.com/nix-aurora/nix-aurora/internal/testnode"
	"github.com/nix-aurora/nix-aurora/store"
)

// squatter is testnode's squatter (SquatterCommand) running as the
// hostile neighbour.
type squatter struct {
	cmd  *os.Process
	out  *bufio.Scanner
	done chan error
}

// squat binds names as the neighbour, serving them in mode, until stop.
func squat(t *testing.T, mode string, names []string) *squatter {
	t.Helper()
	testnix.RequireRoot(t)
	cmd := testnode.SquatterCommand(t, mode, names...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the squatter: %v", err)
	}
	s := &squatter{cmd: cmd.Process, out: bufio.NewScanner(stdout), done: make(chan error, 1)}
	t.Cleanup(func() { s.cmd.Kill() })
	ready := make(chan bool, 1)
	go func() { ready <- s.out.Scan() && s.out.Text() == "ready" }()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("the squatter did not start: %v", s.out.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the squatter did not start within 10s")
	}
	go func() { _, err := cmd.Process.Wait(); s.done <- err }()
	return s
}

// stop ends the squatter and returns the connections it accepted.
func (s *squatter) stop(t *testing.T) int {
	t.Helper()
	if err := s.cmd.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		s.out.Scan()
		line <- s.out.Text()
	}()
	select {
	case l := <-line:
		<-s.done
		n, err := strconv.Atoi(strings.TrimSpace(l))
		if err != nil {
			t.Fatalf("the squatter said %q", l)
		}
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("the squatter did not end within 10s")
		return 0
	}
}

// testClaims are claims of a store named after the test, so that tests in
// parallel do not share names.
func testClaims(t *testing.T, trusted ...uint32) *claims {
	loc := store.Location{Mode: store.Daemon, Socket: "/claims-test/" + t.Name()}
	c := newClaims(loc, &claimRun{}, t.Logf)
	if trusted != nil {
		c.trusted = trusted
	}
	return c
}

func TestClaimTrustedUIDs(t *testing.T) {
	me := uint32(os.Getuid())
	if got := trustedUIDs(store.Location{Mode: store.Daemon, Socket: "/s"}); len(got) != 2 || got[0] != me || got[1] != 0 {
		t.Errorf("daemon store: trusted %v, want [%d 0]", got, me)
	}
	root := t.TempDir()
	if err := os.MkdirAll(root+"/nix/store", 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 0 {
		if err := os.Chown(root+"/nix/store", testnode.NeighbourUID, testnode.NeighbourGID); err != nil {
			t.Fatal(err)
		}
	}
	owner := uint32(testnode.NeighbourUID)
	if os.Getuid() != 0 {
		owner = me
	}
	if got := trustedUIDs(store.Location{Mode: store.Local, Store: root, Root: root}); len(got) != 2 || got[1] != owner {
		t.Errorf("single-user store owned by %d: trusted %v", owner, got)
	}
	if got := trustedUIDs(store.Location{Mode: store.Local, Store: "/nonexistent", Root: "/nonexistent"}); len(got) != 1 || got[0] != me {
		t.Errorf("store that cannot be seen: trusted %v, want only [%d]", got, me)
	}
}

// TestClaimTrust: a claim is honoured only when its listener runs as a
// trusted user, whether or not it accepted the connection.
func TestClaimTrust(t *testing.T) {
	t.Parallel()
	c := testClaims(t)
	name := c.name("/nix/store/" + strings.Repeat("a", 32) + "-x")
	sq := squat(t, "never-accept", []string{name})
	defer sq.stop(t)
	// One connection: the listener never accepts, and has a backlog of
	// one. Its credentials are known before any accept.
	conn, err := net.Dial("unix", name)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		trusted []uint32
		want    bool
	}{
		{[]uint32{uint32(os.Getuid()), 0}, false},
		{[]uint32{testnode.NeighbourUID}, true},
	} {
		c.trusted = tc.trusted
		uid, err := peerUID(conn)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.trusts(uid); got != tc.want {
			t.Errorf("listener uid %d, trusted %v: honoured %v, want %v", testnode.NeighbourUID, tc.trusted, got, tc.want)
		}
	}
	conn.Close()
	// Our own claim.
	own, err := c.try("/nix/store/" + strings.Repeat("b", 32) + "-y")
	if err != nil || own == nil {
		t.Fatalf("claim: %v %v", own, err)
	}
	defer own.release()
	conn, err = net.Dial("unix", own.l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c.trusted = trustedUIDs(store.Location{Mode: store.Daemon})
	if uid, err := peerUID(conn); err != nil || !c.trusts(uid) {
		t.Errorf("our own claim is not honoured")
	}
}

// TestClaimSquatted: whatever a neighbour does with a claim name, waiting
// for it ends at once, a name is connected to once per run, and the import
// lock does not stall.
func TestClaimSquatted(t *testing.T) {
	t.Parallel()
	for _, mode := range testnode.SquatModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			c := testClaims(t)
			p := "/nix/store/" + strings.Repeat("c", 32) + "-squatted"
			sq := squat(t, mode, []string{c.name(p), c.name(rootKey(p)), c.name(importLockName)})
			if cl, err := c.try(p); cl != nil || err != nil {
				t.Fatalf("claimed a squatted name: %v %v", cl, err)
			}
			want := claimIgnored
			if mode == "bind-only" {
				want = claimGone
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			const rounds = 200
			for range rounds {
				for _, key := range []string{p, rootKey(p)} {
					if got := c.waitFor(ctx, key); got != want {
						t.Fatalf("waitFor %s: %v, want %v", key, got, want)
					}
				}
				unlock, err := c.lockImports(ctx, 1)
				if err != nil {
					t.Fatal(err)
				}
				unlock()
			}
			// Generous: squatted, each used to take claimWait or spin
			// until ctx ended.
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("%d rounds of waits on squatted claims took %s", rounds, d)
			}
			if ctx.Err() != nil {
				t.Errorf("the waits ran out of time")
			}
			// One connection per name at most: the names are not
			// claims, and not looked at again.
			if n := sq.stop(t); n > 3 {
				t.Errorf("the squatter accepted %d connections to its 3 names", n)
			}
		})
	}
}

// TestClaimReleased: a trusted claim is waited for until its release; a
// trusted listener that accepts, or sends data, is no claim.
func TestClaimReleased(t *testing.T) {
	t.Parallel()
	c := testClaims(t)
	p := "/nix/store/" + strings.Repeat("d", 32) + "-held"
	held, err := c.try(p)
	if err != nil || held == nil {
		t.Fatalf("claim: %v %v", held, err)
	}
	ctx := context.Background()
	time.AfterFunc(200*time.Millisecond, held.release)
	start := time.Now()
	if got := c.waitFor(ctx, p); got != claimReleased {
		t.Errorf("waitFor a released claim: %v, want claimReleased", got)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("waitFor returned after %s, before the release", d)
	}
	if got := c.waitFor(ctx, p); got != claimGone {
		t.Errorf("waitFor a free name: %v, want claimGone", got)
	}

	for i, data := range []bool{false, true} {
		q := "/nix/store/" + strings.Repeat(string(rune('e'+i)), 32) + "-accepts"
		l, err := net.Listen("unix", c.name(q))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				if data {
					conn.Write([]byte("x"))
					defer conn.Close() // kept open: data alone must end the wait
				} else {
					conn.Close()
				}
			}
		}()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if got := c.waitFor(wctx, q); got != claimIgnored || wctx.Err() != nil {
			t.Errorf("waitFor a listener that accepts (data %v): %v (%v), want claimIgnored at once", data, got, wctx.Err())
		}
		cancel()
	}
}

// TestClaimBudget: the time a run waits for trusted claims is bounded in
// all, not per path: concurrent waits share it, and once it is spent no
// claim is waited for.
func TestClaimBudget(t *testing.T) {
	t.Parallel()
	c := testClaims(t)
	c.run.limit = 300 * time.Millisecond
	var keys []string
	for i := range 4 {
		p := "/nix/store/" + strings.Repeat(strconv.Itoa(i), 32) + "-stuck"
		held, err := c.try(p)
		if err != nil || held == nil {
			t.Fatalf("claim: %v %v", held, err)
		}
		defer held.release()
		keys = append(keys, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for _, k := range keys[:3] {
		wg.Go(func() {
			if got := c.waitFor(ctx, k); got != claimIgnored {
				t.Errorf("waitFor a stuck claim: %v, want claimIgnored", got)
			}
		})
	}
	wg.Wait()
	first := time.Since(start)
	if first < c.run.limit {
		t.Errorf("the waits ended after %s, before the budget of %s", first, c.run.limit)
	}
	// Three concurrent waits cost the budget once (a generous bound).
	if first > 10*c.run.limit {
		t.Errorf("three concurrent waits took %s for a budget of %s", first, c.run.limit)
	}
	start = time.Now()
	if got := c.waitFor(ctx, keys[3]); got != claimIgnored {
		t.Errorf("waitFor with the budget spent: %v, want claimIgnored", got)
	}
	if d := time.Since(start); d >= c.run.limit {
		t.Errorf("waitFor with the budget spent waited %s", d)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Errorf("the waits ran out of time")
	}
}

// TestDirectSquattedClaims: a cold run with every claim name it uses
// squatted by the neighbour, in every way, in daemon and single-user mode,
// realises its root promptly, connecting to each name at most once.
func TestDirectSquattedClaims(t *testing.T) {
	t.Parallel()
	fx := testnode.Chain(t, "direct-squatted", 2, 2, 4096)
	cache := testnode.NewCache(t, testnode.CacheOptions{}, fx.Root)
	worlds := map[string]func(*testing.T) *directWorld{
		"daemon": func(t *testing.T) *directWorld {
			return newDaemonWorld(t, testnode.NodeOptions{TrustedPublicKeys: []string{cache.PublicKey}})
		},
		"single-user": func(t *testing.T) *directWorld { return newSingleUserWorld(t, testnode.NodeOptions{}) },
	}
	for kind, newWorld := range worlds {
		for _, mode := range testnode.SquatModes {
			t.Run(kind+"/"+mode, func(t *testing.T) {
				t.Parallel()
				w := newWorld(t)
				conn, err := w.connect(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				names := ClaimNames(conn.Location(), fx.Closure)
				conn.Close()
				sq := squat(t, mode, names)
				d := &Direct{URLs: []string{cache.URL}, Options: cacheOptions(t, cache.PublicKey)}
				start := time.Now()
				// The budget is far below claimWait: a run that waits for
				// a squatted claim, or spins on one, fails.
				if _, err := w.realise(t, d, 20*time.Second, Root{Name: "app", Path: fx.Root}); err != nil {
					t.Fatal(err)
				}
				if el := time.Since(start); el > 10*time.Second {
					t.Errorf("the run took %s with its claims squatted", el)
				}
				if bad := w.node.Invalid(t, fx.Closure...); len(bad) > 0 {
					t.Fatalf("not valid: %v", bad)
				}
				n := sq.stop(t)
				t.Logf("the squatter accepted %d connections to its %d names", n, len(names))
				if n > len(names) {
					t.Errorf("the squatter accepted %d connections to its %d names", n, len(names))
				}
				if n == 0 && (mode == "accept-close" || mode == "wrong-data") {
					t.Errorf("the squatter accepted no connection: the run did not use the names squatted")
				}
			})
		}
	}
}

// TestDirectStuckTrustedClaims: claims of a trusted run that never ends
// (here this process, the store's owner), on the root, every path and the
// imports, cost a run the waiting budget once, and the run then does the
// work.
func TestDirectStuckTrustedClaims(t *testing.T) {
	t.Parallel()
	fx := testnode.Chain(t, "direct-stuck", 2, 2, 4096)
	cache := testnode.NewCache(t, testnode.CacheOptions{}, fx.Root)
	w := newDaemonWorld(t, testnode.NodeOptions{TrustedPublicKeys: []string{cache.PublicKey}})
	conn, err := w.connect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	stuck := newClaims(conn.Location(), &claimRun{}, t.Logf)
	conn.Close()
	for _, p := range fx.Closure {
		for _, key := range []string{p, rootKey(p)} {
			c, err := stuck.try(key)
			if err != nil || c == nil {
				t.Fatalf("claim %s: %v %v", key, c, err)
			}
			defer c.release()
		}
	}
	unlock, err := stuck.lockImports(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	d := &Direct{URLs: []string{cache.URL}, Options: cacheOptions(t, cache.PublicKey)}
	d.claimRun.limit = time.Second
	start := time.Now()
	if _, err := w.realise(t, d, 30*time.Second, Root{Name: "app", Path: fx.Root}); err != nil {
		t.Fatal(err)
	}
	// Generous: a budget per wait would be one for the root, one for the
	// paths (waited for together), then one per import, one after the
	// other.
	el := time.Since(start)
	if el < d.claimRun.limit {
		t.Errorf("the run took %s: it did not wait for the trusted claims", el)
	}
	if el > 6*d.claimRun.limit {
		t.Errorf("the run took %s with a waiting budget of %s", el, d.claimRun.limit)
	}
	if bad := w.node.Invalid(t, fx.Closure...); len(bad) > 0 {
		t.Fatalf("not valid: %v", bad)
	}
}

// TestImportSlots: a run with parallel imports holds as many import slots
// at once, and one more waits until a slot is released.
func TestImportSlots(t *testing.T) {
	c := testClaims(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	first, err := c.lockImports(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.lockImports(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan time.Time, 1)
	go func() {
		third, err := c.lockImports(ctx, 2)
		if err != nil {
			t.Error(err)
		}
		got <- time.Now()
		third()
	}()
	select {
	case <-got:
		t.Fatal("a third import got a slot while both were held")
	case <-time.After(300 * time.Millisecond):
	}
	released := time.Now()
	first()
	select {
	case at := <-got:
		if at.Before(released) {
			t.Fatal("the third import went before a slot was released")
		}
	case <-ctx.Done():
		t.Fatal("the third import never got the released slot")
	}
	second()
	// With one slot, a second import waits: what runs without --imports
	// have always done.
	one, err := c.lockImports(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer one()
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	if _, err := c.lockImports(short, 1); err == nil {
		t.Fatal("two imports held the one slot")
	}
}
