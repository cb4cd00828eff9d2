package realise

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/nix-aurora/nix-aurora/binarycache"
	"github.com/nix-aurora/nix-aurora/internal/human"
	"github.com/nix-aurora/nix-aurora/store"
)

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
		f.logf("%s fetched by other nix-init runs of this node", human.Count(int64(n), "path was", "paths were"))
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
	if err := f.importNar(ctx, pp, nar); err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	size := downloadSize(pp.Info)
	f.s.Fetched(PathReport{Path: pp.Path, From: pp.Cache.URL(), Bytes: size, Seconds: secs})
	f.logf("fetched %s from %s (%s, %.2fs)", pp.Path, pp.Cache.URL(), human.Bytes(size), secs)
	// Only now: the referrers' lines come after this one.
	close(j.imported)
	return nil
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
