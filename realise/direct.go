package realise

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"
	"golang.org/x/sys/unix"

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
		s.Logf("%d of the roots were realised by other nix-init runs of this node", byOthers)
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
	logf("fetching %d paths (%s to download, %s unpacked) directly from %s",
		len(plan.Paths), human.Bytes(plan.DownloadSize), human.Bytes(plan.NarSize), strings.Join(cacheURLs(caches), ", "))
	return d.fetch(ctx, s, plan, logf)
}

// open returns the caches to read, and the errors of those that could not
// be opened; the roots' closure indexes are asked for at the same time.
// The error is non-nil only when none opened and some failed transiently:
// retrying later may help, falling back would not.
func (d *Direct) open(ctx context.Context, roots []string, logf func(string, ...any)) (binarycache.Caches, []error, error) {
	if len(d.Caches) > 0 {
		return d.Caches, nil, nil
	}
	if len(d.URLs) == 0 {
		return nil, nil, nil
	}
	opts := d.Options
	if opts.Logf == nil {
		opts.Logf = logf
	}
	d.openedMu.Lock()
	defer d.openedMu.Unlock()
	var urls []string
	for _, u := range d.URLs {
		if d.opened[u] == nil {
			urls = append(urls, u)
		}
	}
	var failed []error
	if len(urls) > 0 {
		// The plan's first requests go out with nix-cache-info's.
		opts.ClosureIndexes = roots
		// The caches live for this run: a retry asks only for what it
		// has not verified yet.
		opts.RememberNarInfos = true
		fresh, errs := binarycache.OpenEach(ctx, urls, opts)
		if d.opened == nil {
			d.opened = map[string]*binarycache.Cache{}
		}
		for i, c := range fresh {
			if c == nil {
				logf("warning: ignoring substituter %s: %v", urls[i], errs[i])
				failed = append(failed, errs[i])
				continue
			}
			d.opened[urls[i]] = c
		}
	}
	var caches binarycache.Caches
	for _, u := range d.URLs { // the configured order among equal priorities
		if c := d.opened[u]; c != nil {
			caches = append(caches, c)
		}
	}
	caches.Sort()
	if ctx.Err() != nil {
		return nil, nil, fmt.Errorf("open the substituters: %w", errList(append([]error{ctx.Err()}, failed...)))
	}
	if len(caches) == 0 {
		for _, e := range failed {
			if binarycache.IsTransient(e) {
				return nil, nil, fmt.Errorf("no substituter can be reached: %w", errList(failed))
			}
		}
	}
	return caches, failed, nil
}

// knownNarInfos is how many narinfos caches have verified in this run.
func knownNarInfos(caches binarycache.Caches) int {
	n := 0
	for _, c := range caches {
		n += c.KnownNarInfos()
	}
	return n
}

// refusedCaches returns the failures of caches that answered with
// something nix-init refuses (an endless or malformed nix-cache-info, a
// page that is no binary cache...), or nil when every cache that failed is
// one nix-init cannot speak to at all. Only then may the daemon take over:
// it would read a refused cache too, with fewer checks and no bound on
// what it buffers.
func refusedCaches(failed []error) error {
	var refused []error
	for _, e := range failed {
		if !errors.Is(e, binarycache.ErrUnsupported) {
			refused = append(refused, e)
		}
	}
	if len(refused) == 0 {
		return nil
	}
	return &RefusedCacheError{Errs: refused}
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

// errList is several errors as one, on one line.
type errList []error

func (l errList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = oneLine(e.Error())
	}
	return strings.Join(msgs, "; ")
}

func (l errList) Unwrap() []error { return l }

func describeFailures(errs []error) string {
	var msgs []string
	for _, e := range errs {
		var be *binarycache.Error
		if errors.As(e, &be) && be.Cache != "" && be.Err != nil {
			msgs = append(msgs, be.Cache+" ("+oneLine(be.Err.Error())+")")
		} else {
			msgs = append(msgs, oneLine(e.Error()))
		}
	}
	return strings.Join(msgs, "; ")
}

// squash puts a message on one line (Nix indents the continuation lines
// of its errors).
func cacheURLs(cs binarycache.Caches) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.URL()
	}
	return out
}

// notFoundPath returns the store path a planning error says no cache has,
// or "" when the error is something else.
func notFoundPath(err error) string {
	if !errors.Is(err, binarycache.ErrNotFound) {
		return ""
	}
	var found string
	walkErrors(err, func(e error) bool {
		var be *binarycache.Error
		if be, _ = e.(*binarycache.Error); be != nil && store.ValidatePath(be.Path) == nil && errors.Is(be, binarycache.ErrNotFound) {
			found = be.Path
			return false
		}
		return true
	})
	return found
}

// walkErrors calls fn on err and everything it wraps, depth first, until
// fn returns false.
func walkErrors(err error, fn func(error) bool) bool {
	if err == nil {
		return true
	}
	if !fn(err) {
		return false
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return walkErrors(u.Unwrap(), fn)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if !walkErrors(e, fn) {
				return false
			}
		}
	}
	return true
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

// pathJob is one planned path on its way into the store.
type pathJob struct {
	pp       binarycache.PlannedPath
	refs     []*pathJob    // references that are planned too
	imported chan struct{} // closed once the path is valid
	skipped  chan struct{} // closed when it will not be imported by this fetch
	claim    *claim        // held while this run fetches it
}

// fetch downloads and imports the planned paths.
func (d *Direct) fetch(ctx context.Context, s *Session, plan *binarycache.Plan, logf func(string, ...any)) error {
	if d.Local != nil {
		if d.Local.Writable() {
			return d.fetchLocal(ctx, s, plan, logf)
		}
		logf("cannot write to %s: importing through nix-daemon", d.Local.Dir)
	}
	jobs := make([]*pathJob, len(plan.Paths))
	byPath := make(map[string]*pathJob, len(plan.Paths))
	for i, pp := range plan.Paths {
		jobs[i] = &pathJob{pp: pp, imported: make(chan struct{}), skipped: make(chan struct{})}
		byPath[pp.Path] = jobs[i]
	}
	for _, j := range jobs {
		for _, ref := range j.pp.Info.ReferencePaths() {
			if r := byPath[ref]; r != nil && r != j {
				j.refs = append(j.refs, r)
			}
		}
	}
	connect := d.Connect
	if connect == nil {
		connect = s.Config.Connect
	}
	f := &fetcher{d: d, s: s, logf: logf, pool: newConnPool(s, connect, d.Imports, logf), deferred: &transientFailures{}}
	defer f.pool.close()
	// In single-user mode the store is ours and trusts us: what we import
	// is exactly what we verified. A daemon checks the signatures again.
	f.dontCheckSigs = s.Conn.Location().Mode == store.Local && s.Conn.Trust() == store.Trusted
	if !d.NoClaims {
		f.claims = newClaims(s.Conn.Location(), &d.claimRun, logf)
	}

	nJobs := d.Jobs
	if nJobs <= 0 {
		nJobs = DefaultDirectJobs
	}
	budget := d.memoryChunks()
	downloads := semaphore.NewWeighted(int64(nJobs))
	memory := semaphore.NewWeighted(budget)
	g, gctx := errgroup.WithContext(ctx)
	var stopped error
	// Claims first, all at once: each path is fetched by the run that
	// claims it first, and the others wait for it.
	var mine, others []*pathJob
	for _, j := range jobs {
		if f.claim(j) {
			mine = append(mine, j)
		} else {
			others = append(others, j)
		}
	}
	defer func() {
		for _, j := range mine {
			j.claim.release() // those never launched
		}
	}()
	launch := func(j *pathJob, r *reservation) {
		g.Go(func() error {
			defer r.free()
			return f.fetchOne(gctx, j, r)
		})
	}
	// Waiting for other runs starts at once, for all their paths together:
	// a run must never wait for one path of another run while holding one
	// that the other run waits for.
	if len(others) > 0 {
		g.Go(func() error {
			return f.awaitOthers(gctx, others, func(j *pathJob) error {
				// Out of plan order now: take memory only if it is free.
				if err := downloads.Acquire(gctx, 1); err != nil {
					j.claim.release()
					return fmt.Errorf("fetch %s: %w", j.pp.Path, err)
				}
				r := &reservation{downloads: downloads, memory: memory, slot: true}
				if size := chunksFor(j.pp.Info.NarSize); size <= budget/4 && memory.TryAcquire(size) {
					r.chunks = size
				}
				launch(j, r)
				return nil
			})
		})
	}
	// Downloads start in plan order, references first, and take their
	// memory in that order: every started path's references started
	// before it and hold what they need to finish, so waiting for memory
	// cannot deadlock, and imports can start early.
	for _, j := range mine {
		if err := downloads.Acquire(gctx, 1); err != nil {
			stopped = err
			break
		}
		r := &reservation{downloads: downloads, memory: memory, slot: true}
		if size := chunksFor(j.pp.Info.NarSize); size <= budget/4 {
			if err := memory.Acquire(gctx, size); err != nil {
				downloads.Release(1)
				stopped = err
				break
			}
			r.chunks = size
		}
		launch(j, r)
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if stopped != nil {
		return fmt.Errorf("fetch %d paths: %w", len(jobs), stopped)
	}
	return f.deferred.err()
}

// fetcher is the state of one fetch.
type fetcher struct {
	d             *Direct
	s             *Session
	logf          func(string, ...any)
	pool          *connPool
	dontCheckSigs bool
	claims        *claims // nil: each run fetches what it misses
	claimsBroken  atomic.Bool
	byOthers      atomic.Int64 // paths other runs fetched for this one
	deferred      *transientFailures
}

// claim claims j for this run, and reports whether this run fetches it:
// false when another run of the node does.
func (f *fetcher) claim(j *pathJob) bool {
	if f.claims == nil || f.claimsBroken.Load() {
		return true
	}
	c, err := f.claims.try(j.pp.Path)
	if err != nil {
		if !f.claimsBroken.Swap(true) {
			f.logf("cannot coordinate with other nix-init runs (%v): fetching every missing path", err)
		}
		return true
	}
	j.claim = c
	return c != nil
}

// releaseGather is how long awaitOthers gathers released claims before it
// asks the store which of their paths became valid.
const releaseGather = 20 * time.Millisecond

// awaitOthers waits for the paths other runs fetch, all at once: each
// that became valid counts as imported; each that did not (its run failed,
// or its claim is not waited for) goes to fetch, unless another run claimed
// it meanwhile (a name found in use with nobody listening claimRounds
// times is fetched here). The paths whose claims were released by the time
// one is looked at are checked together, in one query.
func (f *fetcher) awaitOthers(ctx context.Context, others []*pathJob, fetch func(*pathJob) error) error {
	type release struct {
		j       *pathJob
		outcome waitOutcome
	}
	done := make(chan release, len(others))
	gone := map[*pathJob]int{} // rounds that found nobody listening
	var waiters sync.WaitGroup
	defer waiters.Wait()
	wait := func(j *pathJob) {
		waiters.Go(func() {
			done <- release{j, f.claims.waitFor(ctx, j.pp.Path)}
		})
	}
	for _, j := range others {
		wait(j)
	}
	for pending := len(others); pending > 0; {
		var batch []release
		select {
		case r := <-done:
			batch = append(batch, r)
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		// Releases come one path at a time as the claimant imports them:
		// gathering them for a moment costs a waiting run little, and
		// spares a busy daemon a query per path from every waiting run.
		gather := time.NewTimer(releaseGather)
	drain:
		for len(batch) < pending {
			select {
			case r := <-done:
				batch = append(batch, r)
			case <-gather.C:
				break drain
			case <-ctx.Done():
				gather.Stop()
				return context.Cause(ctx)
			}
		}
		gather.Stop()
		pending -= len(batch)
		paths := make([]string, len(batch))
		for i, r := range batch {
			paths[i] = r.j.pp.Path
		}
		valid, err := f.pool.validPaths(ctx, paths)
		if err != nil {
			return fmt.Errorf("check the paths other nix-init runs fetched: %w", err)
		}
		for _, r := range batch {
			if r.outcome == claimGone {
				gone[r.j]++
			}
			switch {
			case valid[r.j.pp.Path]:
				f.byOthers.Add(1)
				close(r.j.imported)
			case r.outcome == claimIgnored || gone[r.j] >= claimRounds || f.claim(r.j):
				// Its run failed, is too slow, or was no claim: fetch it here.
				if err := fetch(r.j); err != nil {
					return err
				}
			default:
				// Claimed again meanwhile: wait for that run.
				pending++
				wait(r.j)
			}
		}
	}
	if n := f.byOthers.Load(); n > 0 {
		f.logf("%d paths were fetched by other nix-init runs of this node", n)
	}
	return nil
}

// reservation is what a path's fetch holds: a download slot until its
// download ends, and the memory its NAR waits in until its import.
type reservation struct {
	downloads, memory *semaphore.Weighted
	slot              bool
	chunks            int64
}

func (r *reservation) endDownload() {
	if r.slot {
		r.downloads.Release(1)
		r.slot = false
	}
}

func (r *reservation) free() {
	r.endDownload()
	r.memory.Release(r.chunks)
	r.chunks = 0
}

// fetchOne fetches one path, unless another run of this node does (see
// claims): it downloads it (holding a download slot), waits for its
// references, and imports it.
func (f *fetcher) fetchOne(ctx context.Context, j *pathJob, r *reservation) error {
	start := time.Now()
	pp := j.pp
	defer j.claim.release()
	nar, err := f.d.download(ctx, pp, r.chunks > 0)
	r.endDownload()
	if err != nil {
		if f.deferred.add(ctx, err) {
			close(j.skipped) // the others go on; the next attempt fetches it
			return nil
		}
		return err
	}
	defer nar.discard()
	for _, ref := range j.refs {
		select {
		case <-ref.imported:
		case <-ref.skipped:
			close(j.skipped)
			return nil
		case <-ctx.Done():
			return fmt.Errorf("import %s: waiting for %s: %w", pp.Path, ref.pp.Path, context.Cause(ctx))
		}
	}
	info := store.PathInfo{
		Path:       pp.Path,
		NarHash:    pp.Info.NarHash,
		NarSize:    pp.Info.NarSize,
		References: pp.Info.ReferencePaths(),
		Sigs:       pp.Info.Sigs,
		CA:         pp.Info.CA,
	}
	// The deriver is not signed: one the daemon could not parse would cost
	// the connection, and it is only informational.
	if drv := binarycache.StoreDir + "/" + pp.Info.Deriver; pp.Info.Deriver != "" && store.ValidatePath(drv) == nil {
		info.Deriver = drv
	}
	conn, err := f.pool.get(ctx)
	if err != nil {
		return fmt.Errorf("import %s: %w", pp.Path, err)
	}
	unlock := func() {}
	if f.claims != nil {
		if unlock, err = f.claims.lockImports(ctx); err != nil {
			f.pool.put(conn)
			return fmt.Errorf("import %s: %w", pp.Path, err)
		}
	}
	err = conn.AddToStoreNar(ctx, info, nar.reader(), false, f.dontCheckSigs)
	unlock()
	f.pool.put(conn)
	if err != nil {
		hint := ""
		var de *store.DaemonError
		if errors.As(err, &de) && refusedSignature(de.Message) {
			hint = " (" + untrustedKeyHint + ")"
		}
		return fmt.Errorf("import %s fetched from %s: %w%s", pp.Path, pp.Cache.URL(), err, hint)
	}
	secs := time.Since(start).Seconds()
	size := downloadSize(pp.Info)
	f.s.Fetched(PathReport{Path: pp.Path, From: pp.Cache.URL(), Bytes: size, Seconds: secs})
	f.logf("fetched %s from %s (%s, %.2fs)", pp.Path, pp.Cache.URL(), human.Bytes(size), secs)
	// Only now: the referrers' lines come after this one.
	close(j.imported)
	return nil
}

// spool is a downloaded, checked NAR waiting for its import: in chunks of
// memory, or in a temporary file.
type spool struct {
	chunks [][]byte // each of spoolChunk bytes' capacity
	room   int      // chunks the spool may still take
	file   *os.File
}

// memoryChunks is the memory budget in chunks.
func (d *Direct) memoryChunks() int64 {
	budget := d.Memory
	if budget <= 0 {
		budget = DefaultDirectMemory
	}
	return max(budget/spoolChunk, 1)
}

// spoolChunk is the unit of the memory budget. Chunks are recycled, so
// that a cold closure's hundred megabytes do not become garbage: with a
// fresh buffer per NAR, the collector ran every millisecond or two under
// the heap limit, and took a sixth of nix-init's CPU.
const spoolChunk = 16 << 10

// spoolChunks are the free chunks. Not a sync.Pool: under nix-init's heap
// limit the collector runs often, and each cycle would empty it. The
// memory budget bounds how many chunks exist.
var spoolChunks struct {
	sync.Mutex
	free []*[spoolChunk]byte
}

func getChunk() []byte {
	spoolChunks.Lock()
	defer spoolChunks.Unlock()
	if n := len(spoolChunks.free); n > 0 {
		c := spoolChunks.free[n-1]
		spoolChunks.free = spoolChunks.free[:n-1]
		return c[:0]
	}
	return new([spoolChunk]byte)[:0]
}

func putChunks(cs [][]byte) {
	spoolChunks.Lock()
	defer spoolChunks.Unlock()
	for _, c := range cs {
		spoolChunks.free = append(spoolChunks.free, (*[spoolChunk]byte)(c[:spoolChunk]))
	}
}

// chunksFor is how many chunks a NAR of n bytes takes.
func chunksFor(n uint64) int64 { return int64((n + spoolChunk - 1) / spoolChunk) }

func (sp *spool) Write(p []byte) (int, error) {
	if sp.file != nil {
		return sp.file.Write(p)
	}
	n := len(p)
	for len(p) > 0 {
		last := len(sp.chunks) - 1
		if last < 0 || len(sp.chunks[last]) == spoolChunk {
			if sp.room == 0 {
				return n - len(p), errors.New("the NAR is larger than its narinfo says")
			}
			sp.room--
			sp.chunks = append(sp.chunks, getChunk())
			last++
		}
		c := copy(sp.chunks[last][len(sp.chunks[last]):spoolChunk], p)
		sp.chunks[last] = sp.chunks[last][:len(sp.chunks[last])+c]
		p = p[c:]
	}
	return n, nil
}

// reader reads the NAR from its start.
func (sp *spool) reader() io.Reader {
	if sp.file != nil {
		return sp.file
	}
	rs := make([]io.Reader, len(sp.chunks))
	for i, c := range sp.chunks {
		rs[i] = bytes.NewReader(c)
	}
	return io.MultiReader(rs...)
}

// discard recycles the memory or removes the file.
func (sp *spool) discard() {
	putChunks(sp.chunks)
	sp.chunks = nil
	if sp.file != nil {
		sp.file.Close() // nameless: closing frees it
	}
}

// anonymousFile opens a read-write file in dir that has no name, so that
// nothing is left behind however the process ends (a SIGKILL included):
// O_TMPFILE where the filesystem supports it, else a file unlinked right
// after it is created. The open descriptor is the only way to it.
func anonymousFile(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), filepath.Join(dir, "nix-init-spool.nar (deleted)")), nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
		return nil, &os.PathError{Op: "open O_TMPFILE", Path: dir, Err: err}
	}
	// No O_TMPFILE here (EISDIR: a kernel that predates it).
	f, err := os.CreateTemp(dir, "nix-init-*.nar")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("unlink temporary file: %w", err)
	}
	return f, nil
}

// download streams pp's NAR into memory (room for NarSize bytes) or a new
// temporary file, and returns it ready to read; the caller discards it.
// The cache client's stream ends without error only when NarSize bytes
// with the NarHash arrived and they passed the strict NAR reader, so that
// nothing the store might unpack differently (names such as "..",
// unsorted or duplicate entries, trailing data) is ever handed to it.
func (d *Direct) download(ctx context.Context, pp binarycache.PlannedPath, inMemory bool) (*spool, error) {
	rc, err := pp.Cache.OpenNar(ctx, pp.Info)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	sp := &spool{}
	if inMemory {
		sp.room = int(chunksFor(pp.Info.NarSize))
	} else {
		dir := d.TempDir
		if dir == "" {
			dir = os.TempDir()
		}
		if sp.file, err = anonymousFile(dir); err != nil {
			return nil, &binarycache.Error{Op: "download NAR", Path: pp.Path, Cache: pp.Cache.URL(), Err: fmt.Errorf("temporary file: %w", err)}
		}
	}
	fail := func(err error) (*spool, error) {
		sp.discard()
		return nil, err
	}
	dst := &sinkWriter{w: sp}
	n, err := io.Copy(dst, rc)
	switch {
	case dst.err != nil:
		return fail(&binarycache.Error{Op: "download NAR", Path: pp.Path, Cache: pp.Cache.URL(), Err: fmt.Errorf("spooling: %w", dst.err)})
	case err != nil:
		return fail(err) // the cache client's error names the path and cache
	case uint64(n) != pp.Info.NarSize:
		return fail(&binarycache.Error{Op: "check NAR", Path: pp.Path, Cache: pp.Cache.URL(),
			Err: fmt.Errorf("%w: %d bytes read, the narinfo says %d", binarycache.ErrHashMismatch, n, pp.Info.NarSize)})
	}
	if sp.file != nil {
		if _, err := sp.file.Seek(0, io.SeekStart); err != nil {
			return fail(&binarycache.Error{Op: "download NAR", Path: pp.Path, Cache: pp.Cache.URL(), Err: fmt.Errorf("temporary file: %w", err)})
		}
	}
	return sp, nil
}

// sinkWriter remembers the first write error.
type sinkWriter struct {
	w   io.Writer
	err error
}

func (s *sinkWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if err != nil && s.err == nil {
		s.err = err
	}
	return n, err
}

// connPool lends store connections for imports: the session's own, and up
// to max-1 more opened on demand. Extra connections that cannot be opened
// are done without.
type connPool struct {
	free    chan *store.Conn
	connect func(context.Context) (*store.Conn, error)
	logf    func(string, ...any)
	verbose bool

	mu     sync.Mutex
	size   int // connections lent or free
	max    int
	extras []*store.Conn
}

func newConnPool(s *Session, connect func(context.Context) (*store.Conn, error), n int, logf func(string, ...any)) *connPool {
	if n <= 0 {
		n = DefaultDirectImports
	}
	p := &connPool{free: make(chan *store.Conn, n), connect: connect, logf: logf, verbose: s.Config.Verbose, size: 1, max: n}
	if connect == nil {
		p.max = 1
	}
	p.free <- s.Conn
	return p
}

// get returns a free connection, opening one if none is free and the pool
// may grow.
func (p *connPool) get(ctx context.Context) (*store.Conn, error) {
	select {
	case c := <-p.free:
		return c, nil
	default:
	}
	p.mu.Lock()
	grow := p.size < p.max
	if grow {
		p.size++
	}
	p.mu.Unlock()
	if grow {
		c, err := p.connect(ctx)
		if err == nil {
			c.SetLogger(p.daemonLog)
			p.mu.Lock()
			p.extras = append(p.extras, c)
			p.mu.Unlock()
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		p.mu.Lock()
		p.size--
		p.max = p.size // do not try again
		n := p.size
		p.mu.Unlock()
		p.logf("cannot open another store connection for parallel imports (%v): importing on %d", err, n)
	}
	select {
	case c := <-p.free:
		return c, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

func (p *connPool) put(c *store.Conn) { p.free <- c }

// validPaths asks one of the pool's connections which of paths are valid.
func (p *connPool) validPaths(ctx context.Context, paths []string) (map[string]bool, error) {
	c, err := p.get(ctx)
	if err != nil {
		return nil, err
	}
	defer p.put(c)
	valid, err := c.QueryValidPaths(ctx, paths, false)
	if err != nil {
		return nil, err
	}
	return pathSet(valid), nil
}

// daemonLog passes on what the daemon says on an extra connection as the
// session's tracker does: warnings and errors, everything when verbose.
func (p *connPool) daemonLog(ev store.Event) {
	if ev.Kind != store.Log {
		return
	}
	line := oneLine(ev.Text)
	if line != "" && (p.verbose || strings.HasPrefix(line, "warning:") || strings.HasPrefix(line, "error:")) {
		p.logf("nix: %s", line)
	}
}

// close closes the extra connections (their temp roots go with them; the
// session's connection holds its own on every planned path).
func (p *connPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.extras {
		c.Close()
	}
	p.extras = nil
}
