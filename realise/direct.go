package realise

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/nix-aurora/nix-aurora/binarycache"
	"github.com/nix-aurora/nix-aurora/internal/human"
	"github.com/nix-aurora/nix-aurora/localstore"
	"github.com/nix-aurora/nix-aurora/store"
)

// Defaults of Direct.
const (
	DefaultDirectJobs = 16
	// One connection imports fastest on Nix 2.8: workers of separate
	// connections contend for the store's SQLite database, and a cold
	// 400-path closure took 0.86 s with one, 1.3 to 1.5 s with four and
	// 1.6 s with eight (bench/, BenchmarkColdStart fixture).
	DefaultDirectImports = 1
	// NARs wait between download and import in memory up to this many
	// bytes in all; a NAR larger than a quarter of it waits in a
	// temporary file. A temporary file per path cost a cold 400-path
	// closure about a third of its time (creating and removing an inode
	// each), and 8 MiB keeps nix-init within its 32 MiB.
	DefaultDirectMemory = 4 << 20
)

// Direct substitutes by fetching NARs from binary caches itself and
// importing each through the store's AddToStoreNar, instead of asking the
// daemon to substitute (Nix 2.8 fetches one path at a time and discovers a
// closure one level per round trip).
//
// One Substitute call:
//  1. opens the caches (one nix-cache-info request each);
//  2. plans the whole missing closure (binarycache.Caches.Plan: one request
//     per root when a cache has a closure index, else breadth first, each
//     level in parallel), verifying every narinfo's signature against the
//     trusted keys before any NAR is requested;
//  3. holds a temp root on the session's connection for every planned path,
//     so that a garbage collection meanwhile cannot take an imported
//     dependency before its referrer is valid and rooted (the daemon's
//     temp roots match invalid paths too, by hash part);
//  4. downloads the NARs, Jobs at a time, references first, each streamed
//     through the strict NAR reader into memory (within Memory) or, when
//     large, into a temporary file that has no name, so that no kill
//     leaves it behind (the cache client checks NarSize and NarHash at the
//     end);
//  5. imports each path as soon as its download is complete and all its
//     references are valid, on a pool of at most Imports connections, so
//     independent paths import in parallel.
//
// Memory stays bounded: small buffers per download, plus at most Memory
// bytes of NARs waiting for their import; disk holds at most the large NARs
// downloaded but not yet imported, each removed after its import.
//
// Signatures: with a daemon, AddToStoreNar asks it to check the signatures
// again against its own trusted keys. In single-user mode (a child
// nix-daemon --stdio serving a local store) nix-init is the only gate: the
// paths it imports are exactly those whose narinfos it verified, and the
// store is told not to check again.
//
// When direct substitution cannot be used (no caches, or caches of a type
// it cannot speak to, e.g. an s3:// URL, that are all that opened or might
// have a path missing from the others), Fallback substitutes instead. A
// reachable cache that sent something refused (an endless nix-cache-info,
// a page that is no binary cache) never falls back, nor do signature and
// hash failures: the daemon would read the same content.
type Direct struct {
	// URLs are the binary caches (nix.conf's substituters), opened at each
	// Substitute call that has something to fetch: a run where everything
	// is valid makes no request.
	URLs []string
	// Options say how caches are read: TrustedKeys (trusted-public-keys),
	// Netrc, timeouts and retries. A nil Logf logs through the session.
	Options binarycache.Options
	// Caches, when not empty, are used instead of opening URLs.
	Caches binarycache.Caches
	// Jobs bounds the parallel downloads (default DefaultDirectJobs).
	Jobs int
	// Imports bounds the store connections importing at once, the
	// session's own included (default DefaultDirectImports).
	Imports int
	// Connect opens extra configured connections to the same store for
	// parallel imports; nil means the session's Config.Connect. When it
	// fails, the imports share the connections that are open.
	Connect func(ctx context.Context) (*store.Conn, error)
	// Memory bounds the bytes of downloaded NARs held in memory until
	// their import (default DefaultDirectMemory).
	Memory int64
	// TempDir holds the NARs too large to wait in memory (default
	// os.TempDir()).
	TempDir string
	// Fallback substitutes when direct substitution cannot be used; nil
	// makes that an error.
	Fallback Substituter
	// Local, when set, is the store the session's connection serves,
	// owned by this process (single-user Nix): NARs are unpacked straight
	// into it and registered a batch per transaction (see fetchLocal)
	// instead of imported one by one through the child nix-daemon.
	Local *localstore.Store
	// NoClaims turns off the sharing of work with other nix-init runs on
	// the node (see claims).
	NoClaims bool

	claimRun claimRun // shared by the run's claims: the waiting budget

	// opened are the caches of URLs that opened at an earlier call: a
	// retry asks again only the others, and reuses what these learned
	// (their narinfos), so that each attempt against a flaky cache gets
	// further than the one before instead of starting over.
	openedMu sync.Mutex
	opened   map[string]*binarycache.Cache
}

// Substitute makes paths valid with their closures (see Direct).
func (d *Direct) Substitute(ctx context.Context, s *Session, paths []string) error {
	err := d.substitute(ctx, s, paths)
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		// Stopped from outside, or out of time: say so, whatever the
		// interrupted operation made of it (the engine tells a budget
		// that ran out from a failure by this).
		err = fmt.Errorf("%w (%w)", err, ctx.Err())
	}
	return err
}

func (d *Direct) substitute(ctx context.Context, s *Session, paths []string) error {
	if d.NoClaims || s.Conn == nil { // claims are per store
		return d.substituteNow(ctx, s, paths)
	}
	return d.substituteShared(ctx, s, newClaims(s.Conn.Location(), &d.claimRun, s.Logf), paths)
}

// substituteShared realises the roots no other run of the node is
// realising, then waits for the others' and takes over those that did
// not become valid. Many sandboxes of one job starting on a node at once
// then plan and fetch a closure once: the runs that wait cost a
// connection and a query each.
//
// A run never waits for a root while it holds the claim of another, so
// two runs that share roots cannot wait for each other.
func (d *Direct) substituteShared(ctx context.Context, s *Session, cl *claims, paths []string) error {
	noWait := map[string]bool{} // not worth waiting for: fetch without a claim
	gone := map[string]int{}    // rounds that found nobody listening
	byOthers := 0
	for len(paths) > 0 {
		var mine, others []string
		var held []*claim
		for _, p := range paths {
			if noWait[p] {
				mine = append(mine, p)
				continue
			}
			c, err := cl.try(rootKey(p))
			switch {
			case err != nil:
				mine = append(mine, p)
			case c != nil:
				mine = append(mine, p)
				held = append(held, c)
			default:
				others = append(others, p)
			}
		}
		var err error
		if len(mine) > 0 {
			err = d.substituteNow(ctx, s, mine)
		}
		for _, c := range held {
			c.release()
		}
		if err != nil {
			return err
		}
		if len(others) == 0 {
			break
		}
		var wg sync.WaitGroup
		outcomes := make([]waitOutcome, len(others))
		for i, p := range others {
			wg.Go(func() { outcomes[i] = cl.waitFor(ctx, rootKey(p)) })
		}
		wg.Wait()
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		valid, err := s.Conn.QueryValidPaths(ctx, others, false)
		if err != nil {
			return fmt.Errorf("check the roots other nix-init runs realised: %w", err)
		}
		byOthers += len(valid)
		isValid := pathSet(valid)
		paths = nil
		for i, p := range others {
			if !isValid[p] {
				// Its run failed, or is too slow: take it over.
				paths = append(paths, p)
				if outcomes[i] == claimGone {
					gone[p]++
				}
				noWait[p] = noWait[p] || outcomes[i] == claimIgnored || gone[p] >= claimRounds
			}
		}
	}
	if byOthers > 0 {
		s.Logf("%s realised by other nix-init runs of this node", human.Count(int64(byOthers), "root was", "roots were"))
	}
	return nil
}

// substituteNow plans and fetches paths' closures.
func (d *Direct) substituteNow(ctx context.Context, s *Session, paths []string) error {
	logf := serialLog(s.Logf)
	caches, failed, err := d.open(ctx, paths, logf)
	if err != nil {
		return err
	}
	if len(caches) == 0 {
		if len(failed) == 0 {
			return d.fallback(ctx, s, paths, "no substituters configured",
				errors.New("direct substitution unavailable (no substituters configured), and no fallback"))
		}
		if err := refusedCaches(failed); err != nil {
			return err
		}
		return d.fallback(ctx, s, paths, "no substituter can be read: "+describeFailures(failed),
			fmt.Errorf("direct substitution unavailable (no substituter can be read), and no fallback: %w", errList(failed)))
	}
	isValid := func(ps []string) ([]string, error) { return s.Conn.QueryValidPaths(ctx, ps, false) }
	known := knownNarInfos(caches)
	plan, err := caches.Plan(ctx, paths, isValid)
	if knownNarInfos(caches) > known {
		s.Progressed()
	}
	if err != nil {
		missing := notFoundPath(err)
		if missing == "" {
			return err
		}
		nf := &NotFoundError{Paths: []string{missing}, Caches: cacheURLs(caches)}
		var transient []error
		for _, e := range failed {
			if binarycache.IsTransient(e) {
				transient = append(transient, e)
			}
		}
		switch {
		case len(transient) > 0:
			// A cache that could not be asked may have it: that can heal.
			return fmt.Errorf("cannot tell whether a substituter has %s: %s do not, and %w",
				missing, strings.Join(nf.Caches, ", "), errList(transient))
		case len(failed) > 0:
			if err := refusedCaches(failed); err != nil {
				return fmt.Errorf("%w, and %w", nf, err)
			}
			return d.fallback(ctx, s, paths, fmt.Sprintf("%s is in none of the substituters nix-init can read, and it cannot read %s",
				missing, describeFailures(failed)), fmt.Errorf("%w; nix-init cannot read %s", nf, describeFailures(failed)))
		}
		return nf
	}
	if len(plan.Paths) == 0 {
		return nil
	}
	// Temp roots first: from the first import on, a path must survive a
	// garbage collection until its referrers are valid and rooted. The
	// import connections' own temp roots go when they close.
	planned := make([]string, len(plan.Paths))
	for i, pp := range plan.Paths {
		planned[i] = pp.Path
	}
	if err := s.Conn.AddTempRoots(ctx, planned); err != nil {
		return fmt.Errorf("hold temp roots on the %d paths to import: %w", len(planned), err)
	}
	sizes := make(map[string]uint64, len(plan.Paths))
	for _, pp := range plan.Paths {
		sizes[pp.Path] = downloadSize(pp.Info)
	}
	s.SetDownloadSizes(sizes)
	logf("fetching %s (%s to download, %s unpacked) directly from %s",
		human.Count(int64(len(plan.Paths)), "path", ""), human.Bytes(plan.DownloadSize), human.Bytes(plan.NarSize), strings.Join(cacheURLs(caches), ", "))
	return d.fetch(ctx, s, plan, logf)
}

// fallback hands paths to the Fallback substituter, saying why; without
// one, it returns noFallback.
func (d *Direct) fallback(ctx context.Context, s *Session, paths []string, reason string, noFallback error) error {
	if d.Fallback == nil {
		return noFallback
	}
	s.Logf("direct substitution unavailable (%s): letting the daemon substitute", reason)
	return d.Fallback.Substitute(ctx, s, paths)
}

// downloadSize is what fetching a path costs: the compressed file's size
// when the narinfo gives it, else the NAR's.
func downloadSize(ni *binarycache.NarInfo) uint64 {
	if ni.FileSize > 0 {
		return ni.FileSize
	}
	return ni.NarSize
}

// serialLog makes a log function safe to call from several goroutines.
func serialLog(logf func(string, ...any)) func(string, ...any) {
	var mu sync.Mutex
	return func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		logf(format, args...)
	}
}
