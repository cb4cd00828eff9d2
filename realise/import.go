package realise

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/nix-aurora/nix-aurora/binarycache"
	"github.com/nix-aurora/nix-aurora/store"
)

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

// limit is how many connections the pool may have.
func (p *connPool) limit() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.max
}

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

// importNar hands pp's downloaded and verified NAR to the daemon
// (AddToStoreNar) on one of the pool's connections; the daemon checks the
// signatures again with its own keys unless the run may skip them.
func (f *fetcher) importNar(ctx context.Context, pp binarycache.PlannedPath, nar *spool) error {
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
		if unlock, err = f.claims.lockImports(ctx, f.pool.limit()); err != nil {
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
	return nil
}
