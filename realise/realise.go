package realise

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/nix-aurora/nix-aurora/gcroots"
	"github.com/nix-aurora/nix-aurora/store"
)

// Root is one closure to realise and root: the process name and the store
// path of its root derivation's output.
type Root struct {
	Name string
	Path string
}

// Config says how to reach the store and where the roots go.
type Config struct {
	// Connect opens a configured connection to the store (SetOptions done).
	// It is called again for every retry: a fresh connection is a fresh
	// daemon worker, which forgets substituters it disabled after errors.
	Connect func(ctx context.Context) (*store.Conn, error)
	// Substituter makes missing paths valid; nil means Daemon.
	Substituter Substituter
	// Substituters are the caches in effect, named in messages.
	Substituters []string
	// GCRootDir is the sandbox directory of the root links (".gc").
	GCRootDir string
	// Timeout is the total budget for all attempts.
	Timeout time.Duration
	// Log receives one line per event worth a line in the sandbox's log.
	Log func(format string, args ...any)
	// Verbose adds the daemon's own log lines and retry details.
	Verbose bool
	// NewBackOff returns the retry policy; nil means the default
	// exponential backoff with jitter bounded by Timeout.
	NewBackOff func() backoff.BackOff
	// GCGrace bounds the wait, once the roots are registered, for a
	// garbage collection in progress; 0 means DefaultGCGrace, and a
	// negative value skips the wait (safe only where no GC runs while
	// sandboxes start).
	GCGrace time.Duration
}

// Substituter makes paths that are not valid in the store valid, with their
// closures. It is the seam between the engine and how paths are fetched:
// through the daemon's own substituters, or (elsewhere) by fetching NARs
// directly and importing them.
type Substituter interface {
	Substitute(ctx context.Context, s *Session, paths []string) error
}

// Session is one attempt's view of the store, handed to the Substituter.
type Session struct {
	Conn   *store.Conn
	Config *Config
	report *Report
	mu     sync.Mutex
	sizes  map[string]uint64 // download size per path, when known
}

// SetDownloadSizes records what each path will cost to download, for the
// per-path log lines and the report.
func (s *Session) SetDownloadSizes(sizes map[string]uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sizes = sizes
}

func (s *Session) downloadSize(path string) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.sizes[path]
	return n, ok
}

// Logf writes a line to the run's log.
func (s *Session) Logf(format string, args ...any) { s.Config.logf(format, args...) }

// Fetched records one substituted path in the report.
func (s *Session) Fetched(p PathReport) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.report.Substituted = append(s.report.Substituted, p)
	s.report.DownloadBytes += p.Bytes
	s.report.progress++
}

// Progressed records that the attempt learned something the next one
// need not ask again (narinfos, say), though it fetched nothing: a retry
// then backs off as after a first failure.
func (s *Session) Progressed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.report.progress++
}

func (c *Config) logf(format string, args ...any) {
	if c.Log != nil {
		c.Log(format, args...)
	}
}

// Realise makes the roots' closures valid and roots them. The report is
// filled in whatever happens; the error wraps ErrGaveUp when transient
// failures outlasted the budget.
func Realise(ctx context.Context, cfg Config, roots []Root) (*Report, error) {
	rep := &Report{Started: time.Now()}
	for _, r := range roots {
		rep.Roots = append(rep.Roots, RootReport{Name: r.Name, Path: r.Path})
	}
	err := realise(ctx, &cfg, roots, rep)
	rep.finish(err)
	return rep, err
}

func realise(ctx context.Context, cfg *Config, roots []Root, rep *Report) error {
	if cfg.Substituter == nil {
		cfg.Substituter = Daemon{}
	}
	if err := checkRoots(roots); err != nil {
		return err
	}
	parent := ctx
	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, cfg.Timeout, errBudget)
		defer cancel()
	}
	var b backoff.BackOff
	if cfg.NewBackOff != nil {
		b = cfg.NewBackOff()
	} else {
		eb := backoff.NewExponentialBackOff()
		eb.InitialInterval = 250 * time.Millisecond
		eb.MaxInterval = 5 * time.Second
		eb.RandomizationFactor = 0.5
		eb.MaxElapsedTime = 0 // the context carries the budget
		b = eb
	}
	// lastErr is the last attempt's failure; lastFailure the last one the
	// budget did not cut short, which says better why the run gave up than
	// "deadline exceeded" in the middle of the next attempt.
	var lastErr, lastFailure error
	attempt := func() error {
		before := rep.progress
		err := attemptOnce(ctx, cfg, roots, rep)
		if err == nil {
			return nil
		}
		lastErr = err
		if ctx.Err() == nil {
			lastFailure = err
		}
		if rep.progress > before {
			// It got further than the last: the cache works, if not for
			// every request. Back off as after a first failure, not as
			// from one that lasts.
			b.Reset()
		}
		if ctx.Err() != nil {
			return backoff.Permanent(err)
		}
		if !Transient(err) {
			return backoff.Permanent(err)
		}
		return err
	}
	notify := func(err error, wait time.Duration) {
		rep.Retries++
		cfg.logf("transient failure, retrying in %s: %v", wait.Round(time.Millisecond), err)
	}
	err := backoff.RetryNotify(attempt, backoff.WithContext(b, ctx), notify)
	if err == nil {
		return nil
	}
	cause := lastErr
	if cause == nil {
		cause = err
	}
	switch {
	case parent.Err() != nil:
		// Stopped from outside (SIGTERM): neither the budget nor the
		// failure's fault.
		if errors.Is(cause, parent.Err()) {
			return cause
		}
		return fmt.Errorf("interrupted (%w) after: %w", parent.Err(), cause)
	case errors.Is(context.Cause(ctx), errBudget) && (lastErr == nil || Transient(lastErr) || (lastFailure != nil && Transient(lastFailure))):
		if lastFailure != nil && lastFailure != lastErr {
			// The budget ran out during an attempt after it: say what failed.
			return fmt.Errorf("%w: still failing after %s and %d %s: %w (the time ran out during the next attempt: %v)",
				ErrGaveUp, cfg.Timeout, rep.Retries, plural(rep.Retries, "retry", "retries"), lastFailure, lastErr)
		}
		return fmt.Errorf("%w: still failing after %s and %d %s: %w", ErrGaveUp, cfg.Timeout, rep.Retries, plural(rep.Retries, "retry", "retries"), cause)
	}
	return err
}

// errBudget is the cause of the context of a run whose time is up.
var errBudget = errors.New("the time budget (Timeout) ran out")

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func checkRoots(roots []Root) error {
	seen := map[string]string{}
	for _, r := range roots {
		if err := store.ValidatePath(r.Path); err != nil {
			return fmt.Errorf("root %s: %w", r.Name, err)
		}
		if err := gcroots.ValidName(r.Name); err != nil {
			return fmt.Errorf("root %s: %w", r.Path, err)
		}
		if other, ok := seen[r.Name]; ok && other != r.Path {
			return fmt.Errorf("root name %s given twice (%s and %s)", r.Name, other, r.Path)
		}
		seen[r.Name] = r.Path
	}
	return nil
}

func attemptOnce(ctx context.Context, cfg *Config, roots []Root, rep *Report) error {
	conn, err := cfg.Connect(ctx)
	if err != nil {
		return fmt.Errorf("connect to the store: %w", err)
	}
	tracker := newTracker(cfg, rep)
	conn.SetLogger(tracker.event)
	// Closing the connection releases its temp roots, so it stays open until
	// the indirect roots exist. After a success nothing needs the child
	// nix-daemon (single-user mode) any more: it is not waited for.
	err = tracker.diagnose(realiseOn(ctx, conn, cfg, roots, rep, tracker))
	if err == nil {
		conn.Release()
	} else {
		conn.Close()
	}
	return err
}

// realiseOn is one attempt on an open connection.
func realiseOn(ctx context.Context, conn *store.Conn, cfg *Config, roots []Root, rep *Report, tracker *tracker) error {
	rep.Store = conn.Location().String()
	rep.DaemonVersion = conn.DaemonVersion()

	paths := uniquePaths(roots)
	if err := conn.AddTempRoots(ctx, paths); err != nil {
		return fmt.Errorf("hold temp roots: %w", err)
	}
	valid, err := conn.QueryValidPaths(ctx, paths, false)
	if err != nil {
		return fmt.Errorf("query valid paths: %w", err)
	}
	missing := difference(paths, valid)
	if len(missing) > 0 {
		sess := &Session{Conn: conn, Config: cfg, report: rep}
		tracker.session = sess
		if err := cfg.Substituter.Substitute(ctx, sess, missing); err != nil {
			return err
		}
		now, err := conn.QueryValidPaths(ctx, missing, false)
		if err != nil {
			return fmt.Errorf("query valid paths after substitution: %w", err)
		}
		if still := difference(missing, now); len(still) > 0 {
			return &NotFoundError{Paths: still, Caches: cfg.Substituters}
		}
	}
	if err := checkComplete(ctx, conn, paths, cfg.logf); err != nil {
		return err
	}
	validSet := pathSet(valid)
	for i, r := range roots {
		link, err := gcroots.Add(ctx, conn, cfg.GCRootDir, r.Name, r.Path)
		if err != nil {
			return err
		}
		rep.Roots[i].Link = link
		rep.Roots[i].WasValid = validSet[r.Path]
	}
	return holdThroughGC(ctx, conn, cfg, tracker, paths)
}

// DefaultGCGrace is how long a run waits at most, roots registered, for a
// garbage collection in progress (see holdThroughGC).
const DefaultGCGrace = 10 * time.Second

// holdThroughGC keeps the temp roots until no garbage collection that may
// have missed the new roots is running.
//
// Nix's GC takes the GC lock, reads the registered roots, then the temp
// roots. A GC that read the roots before ours were registered, and reads
// the temp roots after this connection is gone, would collect the closures
// just rooted. Nix means a temp root added during a GC to reach that GC
// through its socket, but a Nix 2.8 worker that once tried the socket in
// the instant between the GC taking its lock and opening the socket keeps
// a dead socket and never tells any GC again (seen in the tests). So this
// waits for the GC lock, as Nix's own addPermRoot used to (syncWithGC),
// with the one operation an untrusted client may use that takes it: a
// collection that only lists what is live and walks nothing
// (GCReturnLive, MaxFreed 0). It costs a scan of the roots. A collection
// that runs for longer than the grace has read the temp roots long since.
//
// A daemon whose temp roots always reach a running collection (Nix 2.20
// on, see tempRootsReachGC) needs no wait: adding the temp roots again,
// now that the roots exist, hands them to any collection in progress, and
// one that starts later reads the roots. That costs one round trip instead
// of the scan, or the rest of the collection.
func holdThroughGC(ctx context.Context, conn *store.Conn, cfg *Config, tracker *tracker, paths []string) error {
	grace := cfg.GCGrace
	if grace < 0 {
		return nil
	}
	if grace == 0 {
		grace = DefaultGCGrace
	}
	// The common case, no GC in progress, needs no wait: a GC that starts
	// from now on reads the roots just registered. Probing is cheap where
	// the state directory is known; the wait below costs the daemon a scan
	// of every root.
	if dir, ok := gcStateDir(conn.Location()); ok {
		held, running, known := gcRunning(dir)
		if known && !running {
			return nil
		}
		if held != nil {
			defer held.Close()
		}
	}
	readd := tempRootsReachGC(conn.DaemonVersion())
	// Nix says that it waits for the GC lock at level info: ask for it, so
	// that a slow start is explained only when a collection caused it.
	if o, ok := conn.Options(); ok && !readd && o.Verbosity < store.LvlInfo {
		o.Verbosity = store.LvlInfo
		if err := conn.SetOptions(ctx, o); err != nil {
			return fmt.Errorf("wait for garbage collections in progress: %w", err)
		}
	}
	// The budget does not cut this short (the roots exist; the run has
	// succeeded), but an interruption does.
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		if !errors.Is(context.Cause(ctx), errBudget) {
			cancel()
		}
	})
	defer stop()
	start := time.Now()
	var err error
	if readd {
		// The daemon retries until the collection's socket takes them.
		err = conn.AddTempRoots(gctx, paths)
	} else {
		_, err = conn.CollectGarbage(gctx, store.GCOptions{Action: store.GCDeleteSpecific})
	}
	waited := time.Since(start)
	var de *store.DaemonError
	switch {
	case err == nil:
		if tracker.waitedForGC() || readd && waited >= time.Second {
			cfg.logf("waited %.1fs for a garbage collection in progress", waited.Seconds())
		}
		return nil
	case errors.Is(err, context.DeadlineExceeded) && gctx.Err() != nil:
		cfg.logf("a garbage collection has run for over %s; not waiting for it any longer", grace)
		return nil
	case gctx.Err() != nil:
		return err // interrupted
	case errors.As(err, &de) && !store.IsConnectionError(err) && !readd:
		// A daemon that does not let us wait for its GC: the temp roots
		// again are the next best thing (they reach a running GC unless
		// the worker's GC socket is broken).
		if cfg.Verbose {
			cfg.logf("cannot wait for garbage collections in progress (%v); adding the temp roots again", err)
		}
		if err := conn.AddTempRoots(ctx, paths); err != nil {
			return fmt.Errorf("hold temp roots: %w", err)
		}
		return nil
	case readd:
		return fmt.Errorf("hold temp roots for garbage collections in progress: %w", err)
	}
	return fmt.Errorf("wait for garbage collections in progress: %w", err)
}

func uniquePaths(roots []Root) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range roots {
		if !seen[r.Path] {
			seen[r.Path] = true
			out = append(out, r.Path)
		}
	}
	sort.Strings(out)
	return out
}

func difference(all, remove []string) []string {
	rm := pathSet(remove)
	var out []string
	for _, p := range all {
		if !rm[p] {
			out = append(out, p)
		}
	}
	return out
}

// pathSet is paths as a set.
func pathSet(paths []string) map[string]bool {
	set := make(map[string]bool, len(paths))
	for _, p := range paths {
		set[p] = true
	}
	return set
}
