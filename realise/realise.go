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
	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Timeout)
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
	var lastErr error
	attempt := func() error {
		err := attemptOnce(ctx, cfg, roots, rep)
		if err == nil {
			return nil
		}
		lastErr = err
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
	if ctx.Err() != nil && (lastErr == nil || Transient(lastErr) || errors.Is(lastErr, ctx.Err())) {
		cause := lastErr
		if cause == nil {
			cause = ctx.Err()
		}
		return fmt.Errorf("%w within %s (%d retries): %w", ErrGaveUp, cfg.Timeout, rep.Retries, cause)
	}
	return err
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
	// Closing the connection releases its temp roots, so it stays open until
	// the indirect roots exist.
	defer conn.Close()
	tracker := newTracker(cfg, rep)
	conn.SetLogger(tracker.event)
	rep.Store = conn.Location().String()
	rep.DaemonVersion = conn.DaemonVersion()

	paths := uniquePaths(roots)
	for _, p := range paths {
		if err := conn.AddTempRoot(ctx, p); err != nil {
			return fmt.Errorf("hold temp root %s: %w", p, err)
		}
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
	validSet := map[string]bool{}
	for _, p := range valid {
		validSet[p] = true
	}
	for i, r := range roots {
		link, err := gcroots.Add(ctx, conn, cfg.GCRootDir, r.Name, r.Path)
		if err != nil {
			return err
		}
		rep.Roots[i].Link = link
		rep.Roots[i].WasValid = validSet[r.Path]
	}
	return nil
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
	rm := make(map[string]bool, len(remove))
	for _, p := range remove {
		rm[p] = true
	}
	var out []string
	for _, p := range all {
		if !rm[p] {
			out = append(out, p)
		}
	}
	return out
}
