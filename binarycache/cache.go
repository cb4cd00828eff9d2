package binarycache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/nix-aurora/nix-aurora/internal/human"
	"github.com/nix-aurora/nix-aurora/store"
)

// Options configure how caches are read. The zero value is usable but
// trusts no key, so every narinfo fails verification.
type Options struct {
	// TrustedKeys are nix.conf's trusted-public-keys (plus the public
	// halves of secret-key-files).
	TrustedKeys []PublicKey
	// Netrc supplies HTTP credentials (nix.conf's netrc-file); nil: none.
	Netrc *Netrc
	// HTTPClient is used for http(s) caches. nil: DefaultHTTPClient(),
	// or a new client when ConnectTimeout or CA is set (OpenAll shares one
	// among its caches).
	HTTPClient *http.Client
	// CA is what https caches' certificates must chain to (nix.conf's
	// ssl-cert-file, see LoadCA); nil: the system's roots. An HTTPClient
	// given too must have been made for it (NewHTTPClientCA): here it only
	// names the bundle in errors.
	CA *CA
	// ConnectTimeout bounds connection set-up (default DefaultConnectTimeout).
	ConnectTimeout time.Duration
	// StallTimeout aborts a request when no byte arrives for this long,
	// headers included (default DefaultStallTimeout).
	StallTimeout time.Duration
	// MaxConnections bounds the concurrent requests to one cache
	// (default DefaultMaxConnections). A NAR download holds its slot until
	// its reader is closed.
	MaxConnections int
	// Attempts is how many times a request is tried when it fails with a
	// transient error (default DefaultAttempts, Nix's download-attempts).
	Attempts int
	// RetryDelay is the first back-off delay, doubled (with jitter) after
	// each failure (default DefaultRetryDelay).
	RetryDelay time.Duration
	// VerifyFileHash also checks the compressed file against FileHash and
	// FileSize when the narinfo has them. Nix 2.8 does not (only NarHash
	// and NarSize matter), so this is off by default.
	VerifyFileHash bool
	// Logf receives notes: retries, skipped caches, fallbacks. nil: silent.
	Logf func(format string, args ...any)
	// ClosureIndexes are roots whose closure indexes Open asks for at the
	// same time as nix-cache-info, which saves a round trip before a plan
	// (ClosureIndex uses what arrived).
	ClosureIndexes []string
	// RememberNarInfos keeps each narinfo NarInfo verified for the Cache's
	// life: a store path's narinfo does not change, and a retry after a
	// failure elsewhere in its plan need not ask again (at most a
	// closure's worth). For a Cache that lives one run, as nix-init's do.
	RememberNarInfos bool
}

func (o *Options) setDefaults() {
	if o.StallTimeout <= 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = DefaultMaxConnections
	}
	if o.Attempts <= 0 {
		o.Attempts = DefaultAttempts
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = DefaultRetryDelay
	}
	if o.HTTPClient == nil {
		if o.ConnectTimeout > 0 || o.CA != nil {
			o.HTTPClient = NewHTTPClientCA(o.ConnectTimeout, o.CA)
		} else {
			o.HTTPClient = DefaultHTTPClient()
		}
	}
}

// Cache is one binary cache (a substituter), read over http(s) or from a
// local directory (file://). It is safe for concurrent use.
type Cache struct {
	url           string
	priority      int
	wantMassQuery bool
	opts          Options
	be            backend
	sem           *semaphore.Weighted
	retry         retrier

	mu         sync.Mutex
	prefetched map[string]*prefetch // by file name, taken by the first use
	// verified are the narinfos NarInfo returned, by store path, when
	// Options.RememberNarInfos is set.
	verified map[string]*NarInfo
}

// prefetch is a closure index asked for ahead of its use: the request is
// sent and its body left unread (it holds one of the cache's connections)
// until the plan reads it, so that what a cache sends is never held in
// memory before it is checked.
type prefetch struct {
	done   chan struct{}
	cancel context.CancelFunc
	body   io.ReadCloser
	err    error
}

// release closes what the prefetch opened, once it has.
func (p *prefetch) release() {
	p.cancel()
	go func() {
		<-p.done
		if p.body != nil {
			p.body.Close()
		}
	}()
}

// take returns the prefetched file name, waiting for it; ok is false when
// it was not prefetched (or was taken already).
func (c *Cache) take(ctx context.Context, name string) (body io.ReadCloser, err error, ok bool) {
	c.mu.Lock()
	p := c.prefetched[name]
	delete(c.prefetched, name)
	c.mu.Unlock()
	if p == nil {
		return nil, nil, false
	}
	select {
	case <-p.done:
		if p.body == nil {
			p.cancel()
			return nil, p.err, true
		}
		// The request's context lives as long as its body.
		return &slotBody{ReadCloser: p.body, release: p.cancel}, nil, true
	case <-ctx.Done():
		p.release()
		return nil, ctx.Err(), true
	}
}

// dropPrefetched closes the prefetched files nobody took, which frees
// their connections.
func (c *Cache) dropPrefetched() {
	c.mu.Lock()
	ps := c.prefetched
	c.prefetched = map[string]*prefetch{}
	c.mu.Unlock()
	for _, p := range ps {
		p.release()
	}
}

// URL returns the cache's URL without parameters.
func (c *Cache) URL() string { return c.url }

// String returns the URL.
func (c *Cache) String() string { return c.url }

// Priority is the cache's priority: lower is tried first. It comes from the
// URL's ?priority=N, else nix-cache-info's Priority, else 0, as in Nix.
func (c *Cache) Priority() int { return c.priority }

// WantMassQuery is from ?want-mass-query= or nix-cache-info.
func (c *Cache) WantMassQuery() bool { return c.wantMassQuery }

func (c *Cache) logf(format string, args ...any) {
	if c.opts.Logf != nil {
		c.opts.Logf(format, args...)
	}
}

// cacheURL is a parsed cache URL.
type cacheURL struct {
	base          *url.URL // no query, no trailing slash
	priority      *int
	wantMassQuery *bool
	params        url.Values
}

func parseCacheURL(raw string) (*cacheURL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("bad cache URL: %w", err)
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return nil, fmt.Errorf("cache URL %q has no host", raw)
		}
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("cache URL %q: a file:// URL needs an absolute path (file:///dir)", raw)
		}
		if !strings.HasPrefix(u.Path, "/") {
			return nil, fmt.Errorf("cache URL %q: not an absolute path", raw)
		}
		u.Host = ""
	default:
		return nil, fmt.Errorf("cache URL %q: %w (want http, https or file)", raw, ErrUnsupported)
	}
	cu := &cacheURL{params: u.Query()}
	if v := cu.params.Get("priority"); v != "" {
		p, err := parseIntParam(v)
		if err != nil {
			return nil, fmt.Errorf("cache URL %q: priority: %v", raw, err)
		}
		cu.priority = &p
	}
	if v := cu.params.Get("want-mass-query"); v != "" {
		b, err := parseBoolParam(v)
		if err != nil {
			return nil, fmt.Errorf("cache URL %q: want-mass-query: %v", raw, err)
		}
		cu.wantMassQuery = &b
	}
	u.RawQuery, u.Fragment, u.RawFragment = "", "", ""
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	if u.Scheme == "file" && u.Path == "" {
		u.Path = "/"
	}
	cu.base = u
	return cu, nil
}

// Open opens the binary cache at rawURL (http://, https:// or file://,
// with optional ?priority=N and ?want-mass-query=true|false) and reads its
// nix-cache-info, which must exist and, if it names a StoreDir, name
// /nix/store.
func Open(ctx context.Context, rawURL string, opts Options) (*Cache, error) {
	c, cu, err := newCache(rawURL, opts)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithCancel(ctx)
	c.prefetched = map[string]*prefetch{}
	for _, root := range opts.ClosureIndexes {
		// Each prefetched index holds a connection until it is read: one
		// is left for nix-cache-info.
		if HashPart(root) == "" || len(c.prefetched) >= c.opts.MaxConnections-1 {
			continue
		}
		name := ClosureIndexName(root)
		fctx, fcancel := context.WithCancel(pctx)
		p := &prefetch{done: make(chan struct{}), cancel: fcancel}
		c.prefetched[name] = p
		go func() {
			defer close(p.done)
			p.body, p.err = c.openFile(fctx, name)
		}()
	}
	info, err := c.getSmall(ctx, "nix-cache-info", maxCacheInfoSize, false)
	if err != nil {
		// Not a cache we will read.
		cancel()
		c.dropPrefetched()
	} else {
		context.AfterFunc(ctx, func() {
			cancel()
			c.dropPrefetched()
		})
	}
	if errors.Is(err, ErrNotFound) {
		return nil, &Error{Op: "open", Cache: c.url, Err: fmt.Errorf("%w (no nix-cache-info): %w", ErrNotBinaryCache, err)}
	}
	if err != nil {
		return nil, &Error{Op: "open", Cache: c.url, Err: err}
	}
	if err := c.applyCacheInfo(info, cu); err != nil {
		return nil, err
	}
	return c, nil
}

// newCache sets up a Cache without any request.
func newCache(rawURL string, opts Options) (*Cache, *cacheURL, error) {
	opts.setDefaults()
	cu, err := parseCacheURL(rawURL)
	if err != nil {
		return nil, nil, &Error{Op: "open", Cache: rawURL, Err: err}
	}
	c := &Cache{
		opts:  opts,
		sem:   semaphore.NewWeighted(int64(opts.MaxConnections)),
		retry: retrier{attempts: opts.Attempts, delay: opts.RetryDelay, logf: opts.Logf},
	}
	if cu.base.Scheme == "file" {
		c.be = &fileBackend{dir: cu.base.Path}
		c.url = "file://" + cu.base.Path
	} else {
		c.be = &httpBackend{base: cu.base, client: opts.HTTPClient, netrc: opts.Netrc, stall: opts.StallTimeout, ca: opts.CA}
		c.url = cu.base.Redacted()
	}
	return c, cu, nil
}

func (c *Cache) applyCacheInfo(info []byte, cu *cacheURL) error {
	ci, err := parseCacheInfo(info)
	if err != nil {
		return &Error{Op: "open", Cache: c.url, Err: err}
	}
	c.priority, c.wantMassQuery = ci.priority, ci.wantMassQuery
	if cu.priority != nil {
		c.priority = *cu.priority
	}
	if cu.wantMassQuery != nil {
		c.wantMassQuery = *cu.wantMassQuery
	}
	return nil
}

type cacheInfo struct {
	priority      int
	wantMassQuery bool
}

// parseCacheInfo reads nix-cache-info as Nix does: "Key: value" lines,
// values trimmed, lines without a colon and unknown keys ignored.
func parseCacheInfo(b []byte) (cacheInfo, error) {
	var ci cacheInfo
	for _, line := range strings.Split(string(b), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		switch key {
		case "StoreDir":
			if val != StoreDir {
				return ci, fmt.Errorf("the cache is for Nix stores with prefix %q, not %q", val, StoreDir)
			}
		case "WantMassQuery":
			ci.wantMassQuery = val == "1"
		case "Priority":
			p, err := parseIntParam(val)
			if err != nil {
				return ci, fmt.Errorf("nix-cache-info: bad Priority %q", clip(val))
			}
			ci.priority = p
		}
	}
	return ci, nil
}

// maxCacheInfoSize bounds nix-cache-info, a few short lines.
const maxCacheInfoSize = 64 << 10

// getSmall fetches a whole small file, with retries (a truncated body is
// retried too). narinfo selects Nix's narinfo semantics for 401/403/407.
func (c *Cache) getSmall(ctx context.Context, name string, max int64, narinfo bool) ([]byte, error) {
	var data []byte
	err := c.readSmall(ctx, name, max, narinfo, func(b []byte) { data = b })
	return data, err
}

// Small files are read whole, the first smallFileFree bytes of each
// freely. The rest of a larger one (a cache sends such narinfos rarely, or
// to harm) waits for the process-wide largeFiles budget, held until the
// content has been used: however many narinfos are asked for at once
// (Plan asks for 64), their bytes, and what parsing them takes, stay
// within a few MiB.
const smallFileFree = 64 << 10

var largeFiles = semaphore.NewWeighted(MaxNarInfoSize)

// readSmall reads a whole small file (see getSmall) and calls use with it
// before it returns.
func (c *Cache) readSmall(ctx context.Context, name string, max int64, narinfo bool, use func([]byte)) error {
	return c.retry.do(ctx, fmt.Sprintf("fetch %s from %s", name, c.url), func() error {
		if err := c.sem.Acquire(ctx, 1); err != nil {
			return err
		}
		defer c.sem.Release(1)
		rc, err := c.be.open(ctx, name, 0, narinfo)
		if err != nil {
			return err
		}
		defer rc.Close()
		lr, err := limitBody(rc, name, max)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		free := min(max, smallFileFree)
		if _, err := buf.ReadFrom(io.LimitReader(lr, free)); err != nil {
			return err
		}
		if int64(buf.Len()) == free {
			if max > free {
				// A read larger than the budget (the uploader's of an
				// index) takes all of it.
				need := min(max-free, MaxNarInfoSize)
				if err := largeFiles.Acquire(ctx, need); err != nil {
					return err
				}
				defer largeFiles.Release(need)
				// Once, rather than doubling on the way.
				buf.Grow(int(need) + 1)
			}
			// To the end, which also fails if the file passes max.
			if _, err := buf.ReadFrom(lr); err != nil {
				return err
			}
		}
		use(buf.Bytes())
		return nil
	})
}

// openFile opens a cache file for reading, with retries until its first
// byte can be read; the body holds one of the cache's connections until it
// is closed. It reads with narinfo semantics for 401/403/407 (the files it
// opens live next to the narinfos).
func (c *Cache) openFile(ctx context.Context, name string) (io.ReadCloser, error) {
	var body io.ReadCloser
	err := c.retry.do(ctx, fmt.Sprintf("fetch %s from %s", name, c.url), func() error {
		if err := c.sem.Acquire(ctx, 1); err != nil {
			return err
		}
		rc, err := c.be.open(ctx, name, 0, true)
		if err != nil {
			c.sem.Release(1)
			return err
		}
		body = &slotBody{ReadCloser: rc, release: func() { c.sem.Release(1) }}
		return nil
	})
	return body, err
}

// slotBody gives its connection slot back when closed. Close may be called
// more than once, and concurrently with Read (to abandon it).
type slotBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (s *slotBody) Close() error {
	err := s.ReadCloser.Close()
	s.once.Do(s.release)
	return err
}

func (s *slotBody) knownSize() int64 {
	if z, ok := s.ReadCloser.(sizer); ok {
		return z.knownSize()
	}
	return -1
}

// NarInfo fetches, parses and verifies the narinfo of storePath: it must be
// for exactly that path and carry a signature by a trusted key. A cache
// without it fails with ErrNotFound.
func (c *Cache) NarInfo(ctx context.Context, storePath string) (*NarInfo, error) {
	c.mu.Lock()
	ni := c.verified[storePath]
	c.mu.Unlock()
	if ni != nil {
		return ni, nil
	}
	ni, err := c.readNarInfo(ctx, storePath, true)
	if err == nil && c.opts.RememberNarInfos {
		c.mu.Lock()
		if c.verified == nil {
			c.verified = map[string]*NarInfo{}
		}
		c.verified[storePath] = ni
		c.mu.Unlock()
	}
	return ni, err
}

// KnownNarInfos is how many narinfos NarInfo has verified so far.
func (c *Cache) KnownNarInfos() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.verified)
}

// fetchNarInfo fetches and parses a narinfo without verifying signatures.
func (c *Cache) fetchNarInfo(ctx context.Context, storePath string) (*NarInfo, error) {
	return c.readNarInfo(ctx, storePath, false)
}

// readNarInfo fetches and parses a narinfo, and verifies it if asked, all
// while its bytes are held (see readSmall).
func (c *Cache) readNarInfo(ctx context.Context, storePath string, verify bool) (*NarInfo, error) {
	hash := HashPart(storePath)
	if hash == "" {
		return nil, &Error{Op: "fetch narinfo", Path: storePath, Cache: c.url, Err: fmt.Errorf("not a store path: %v", store.ValidatePath(storePath))}
	}
	var ni *NarInfo
	var bad, unverified error
	err := c.readSmall(ctx, hash+".narinfo", MaxNarInfoSize, true, func(data []byte) {
		ni, bad = ParseNarInfo(data)
		if bad == nil {
			bad = ni.CheckPath(storePath)
		}
		if bad == nil && verify {
			unverified = Verify(ni, c.opts.TrustedKeys)
		}
	})
	if err == nil {
		err = bad
	}
	if err != nil {
		return nil, &Error{Op: "fetch narinfo", Path: hash, Cache: c.url, Err: err}
	}
	if unverified != nil {
		return nil, &Error{Op: "verify narinfo", Path: storePath, Cache: c.url, Err: unverified}
	}
	return ni, nil
}

// Caches is a list of caches in the order they are asked: by priority,
// keeping the configured order among equal priorities (Sort).
type Caches []*Cache

// Sort orders the caches by priority, stably.
func (cs Caches) Sort() {
	slices.SortStableFunc(cs, func(a, b *Cache) int { return a.priority - b.priority })
}

// OpenAll opens caches concurrently and returns those that opened, sorted
// by priority. Caches that fail to open are left out, as Nix disables such
// a substituter; the error (nil if all opened) says which and why. One HTTP
// client is shared by all of them.
func OpenAll(ctx context.Context, urls []string, opts Options) (Caches, error) {
	caches, errs := OpenEach(ctx, urls, opts)
	var out Caches
	for _, c := range caches {
		if c != nil {
			out = append(out, c)
		}
	}
	out.Sort()
	return out, errors.Join(errs...)
}

// OpenEach opens the caches of urls in parallel; caches[i] is urls[i]'s,
// nil when it failed with errs[i], which Options.Logf is told.
func OpenEach(ctx context.Context, urls []string, opts Options) (caches []*Cache, errs []error) {
	if opts.HTTPClient == nil && (opts.ConnectTimeout > 0 || opts.CA != nil) {
		opts.HTTPClient = NewHTTPClientCA(opts.ConnectTimeout, opts.CA)
	}
	caches = make([]*Cache, len(urls))
	errs = make([]error, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Go(func() { caches[i], errs[i] = Open(ctx, u, opts) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil && opts.Logf != nil {
			opts.Logf("warning: ignoring substituter %s: %v", urls[i], err)
		}
	}
	return caches, errs
}

// Lookup asks the caches in order for storePath's narinfo and returns the
// first one that verifies, with its cache. A cache whose narinfo is not
// signed by a trusted key (or is invalid) is skipped with a note, like
// Nix. When no cache has a verified narinfo the error says why: ErrNotFound
// when none has it, ErrUntrusted (and ErrBadSignature) when some have it
// but unsigned, or the transient error of a cache that could not answer.
func (cs Caches) Lookup(ctx context.Context, storePath string) (*NarInfo, *Cache, error) {
	if err := store.ValidatePath(storePath); err != nil {
		return nil, nil, &Error{Op: "look up", Path: storePath, Err: err}
	}
	var unsigned, badSig, invalid []string
	var failed []error
	for _, c := range cs {
		ni, err := c.NarInfo(ctx, storePath)
		if err == nil {
			return ni, c, nil
		}
		if ctx.Err() != nil {
			return nil, nil, err
		}
		switch {
		case errors.Is(err, ErrNotFound):
		case errors.Is(err, ErrBadSignature):
			badSig = append(badSig, c.url)
			c.logf("warning: the substitute for %s from %s has a malformed signature: %v", storePath, c.url, err)
		case errors.Is(err, ErrUntrusted):
			unsigned = append(unsigned, c.url)
			c.logf("warning: the substitute for %s from %s is not signed by any of the keys in trusted-public-keys", storePath, c.url)
		case errors.Is(err, ErrBadNarInfo):
			invalid = append(invalid, c.url)
			c.logf("warning: %v", err)
		default:
			failed = append(failed, err)
			c.logf("warning: %v", err)
		}
	}
	var err error
	switch {
	case len(unsigned)+len(badSig) > 0:
		had := append(append([]string(nil), unsigned...), badSig...)
		if len(badSig) > 0 {
			err = fmt.Errorf("%w, %w: %s have it but not signed by any trusted key (%s)",
				ErrUntrusted, ErrBadSignature, strings.Join(had, ", "), keyNames(cs.keys()))
		} else {
			err = fmt.Errorf("%w: %s have it but not signed by any trusted key (%s); add the cache's public key to trusted-public-keys",
				ErrUntrusted, strings.Join(had, ", "), keyNames(cs.keys()))
		}
	case len(failed) > 0:
		err = failed[0]
		if len(failed) > 1 {
			err = fmt.Errorf("%w (and %s failed)", failed[0], human.Count(int64(len(failed)-1), "more cache", "more caches"))
		}
		return nil, nil, err
	case len(invalid) > 0:
		err = fmt.Errorf("%w: %s served an invalid narinfo", ErrBadNarInfo, strings.Join(invalid, ", "))
	default:
		err = fmt.Errorf("%w: no substituter has it (asked %s)", ErrNotFound, cs.urls())
	}
	return nil, nil, &Error{Op: "look up", Path: storePath, Err: err}
}

func (cs Caches) urls() string {
	if len(cs) == 0 {
		return "no substituters"
	}
	var u []string
	for _, c := range cs {
		u = append(u, c.url)
	}
	return strings.Join(u, ", ")
}

func (cs Caches) keys() []PublicKey {
	if len(cs) == 0 {
		return nil
	}
	return cs[0].opts.TrustedKeys
}
