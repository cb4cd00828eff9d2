package binarycache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Defaults of Options, after Nix 2.8's settings where it has one.
const (
	DefaultAttempts       = 5 // download-attempts
	DefaultRetryDelay     = 250 * time.Millisecond
	DefaultMaxConnections = 25               // http-connections
	DefaultConnectTimeout = 20 * time.Second // Nix: connect-timeout 0, curl's default 300 s
	DefaultStallTimeout   = 60 * time.Second // Nix: stalled-download-timeout 300 s
	maxRetryDelay         = 10 * time.Second
	maxHeaderBytes        = 64 << 10
)

// NewHTTPClient returns an HTTP client for binary caches: proxies from the
// environment, connections kept alive and reused (many idle connections per
// host, for parallel downloads), the given connect timeout (0: the
// default), and no overall timeout, since NARs are streamed: stalls are
// caught per read (Options.StallTimeout).
func NewHTTPClient(connectTimeout time.Duration) *http.Client {
	return NewHTTPClientCA(connectTimeout, nil)
}

// NewHTTPClientCA is NewHTTPClient checking https servers against ca
// (nil: the system's roots), as nix.conf's ssl-cert-file asks.
func NewHTTPClientCA(connectTimeout time.Duration, ca *CA) *http.Client {
	if connectTimeout <= 0 {
		connectTimeout = DefaultConnectTimeout
	}
	d := &net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   connectTimeout,
		TLSClientConfig:       ca.tlsConfig(),
		ExpectContinueTimeout: time.Second,
		// Go's default is 10 MiB per response, on each connection; a
		// cache's headers are a few hundred bytes.
		MaxResponseHeaderBytes: maxHeaderBytes,
	}
	return &http.Client{Transport: t}
}

var (
	defaultClientOnce sync.Once
	defaultClient     *http.Client
)

// DefaultHTTPClient is the client shared by every Cache whose Options name
// none: one connection pool for the whole process.
func DefaultHTTPClient() *http.Client {
	defaultClientOnce.Do(func() { defaultClient = NewHTTPClient(0) })
	return defaultClient
}

// backend is where a cache's files live.
type backend interface {
	// open opens a file (a name relative to the cache, or for HTTP caches
	// an absolute http(s) URL) for reading, at byte offset off.
	open(ctx context.Context, name string, off int64, narinfo bool) (io.ReadCloser, error)
	// put stores a file. body may be called again to retry.
	put(ctx context.Context, name, contentType string, size int64, body func() (io.ReadCloser, error)) error
	String() string
}

// checkName refuses names that could escape the cache.
func checkName(name string) error {
	if name == "" || strings.HasPrefix(name, "/") || strings.ContainsAny(name, "\x00\\?#") ||
		path.Clean(name) != name || name == ".." || strings.HasPrefix(name, "../") {
		return fmt.Errorf("%w: file name %q is not a clean relative path", ErrBadNarInfo, clip(name))
	}
	return nil
}

// ---- file:// ----

type fileBackend struct{ dir string }

func (f *fileBackend) String() string { return "file://" + f.dir }

func (f *fileBackend) open(ctx context.Context, name string, off int64, _ bool) (io.ReadCloser, error) {
	if err := checkName(name); err != nil {
		return nil, &permanentError{err}
	}
	fh, size, err := openRegular(filepath.Join(f.dir, filepath.FromSlash(name)))
	if err != nil {
		return nil, err
	}
	if off > 0 {
		if _, err := fh.Seek(off, io.SeekStart); err != nil {
			fh.Close()
			return nil, &permanentError{err}
		}
		size = max(size-off, 0)
	}
	return &sizedFile{File: fh, size: size}, nil
}

// openRegular opens a file of a file:// cache for reading, following
// symlinks (as Nix does) but refusing anything that is not a regular file:
// opening a FIFO would block in the kernel until a writer comes (past
// every timeout and signal), and a device or socket is no cache file. The
// file is opened non-blocking so that a FIFO swapped in after the stat
// cannot block the open either, checked with fstat, and only then made
// blocking for reading. Every read of a file:// cache comes through here.
func openRegular(p string) (*os.File, int64, error) {
	if st, err := os.Stat(p); err == nil && !st.Mode().IsRegular() {
		return nil, 0, notRegular(p, st.Mode())
	}
	fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOTDIR) {
		return nil, 0, fmt.Errorf("%w: %s does not exist", ErrNotFound, p)
	}
	if errors.Is(err, syscall.ENXIO) {
		// What open gives for a unix socket.
		return nil, 0, fmt.Errorf("%w: %s is not a regular file (a socket?)", ErrBadContent, p)
	}
	if err != nil {
		return nil, 0, &permanentError{&os.PathError{Op: "open", Path: p, Err: err}}
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return nil, 0, &permanentError{&os.PathError{Op: "fstat", Path: p, Err: err}}
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		syscall.Close(fd)
		return nil, 0, notRegular(p, fileMode(st.Mode))
	}
	if err := syscall.SetNonblock(fd, false); err != nil {
		syscall.Close(fd)
		return nil, 0, &permanentError{&os.PathError{Op: "fcntl", Path: p, Err: err}}
	}
	return os.NewFile(uintptr(fd), p), st.Size, nil
}

func notRegular(p string, m os.FileMode) error {
	kind := "special file"
	switch {
	case m&os.ModeNamedPipe != 0:
		kind = "named pipe (FIFO)"
	case m&os.ModeSocket != 0:
		kind = "socket"
	case m&os.ModeDevice != 0:
		kind = "device"
	case m.IsDir():
		kind = "directory"
	}
	return fmt.Errorf("%w: %s is a %s, not a regular file", ErrBadContent, p, kind)
}

// fileMode is the os.FileMode of a stat mode's type bits.
func fileMode(mode uint32) os.FileMode {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFIFO:
		return os.ModeNamedPipe
	case syscall.S_IFSOCK:
		return os.ModeSocket
	case syscall.S_IFCHR, syscall.S_IFBLK:
		return os.ModeDevice
	case syscall.S_IFDIR:
		return os.ModeDir
	}
	return os.ModeIrregular
}

// sizedFile is a cache file with the size it had when opened.
type sizedFile struct {
	*os.File
	size int64
}

func (s *sizedFile) knownSize() int64 { return s.size }

// put writes through a temporary file in the same directory and renames it
// into place, so readers never see a partial file.
func (f *fileBackend) put(ctx context.Context, name, _ string, _ int64, body func() (io.ReadCloser, error)) error {
	if err := checkName(name); err != nil {
		return err
	}
	dst := filepath.Join(f.dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	rc, err := body()
	if err != nil {
		return err
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".tmp-"+filepath.Base(dst)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, ctxReader{ctx, rc}); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// renameInto moves a finished local file into the cache (file:// only).
func (f *fileBackend) renameInto(src, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	dst := filepath.Join(f.dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.Chmod(src, 0o644); err != nil {
		return err
	}
	return os.Rename(src, dst)
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// ---- http(s):// ----

type httpBackend struct {
	base   *url.URL // without a trailing slash
	client *http.Client
	netrc  *Netrc
	stall  time.Duration
	ca     *CA // what client checks certificates against, for messages
}

func (h *httpBackend) String() string { return h.base.String() }

func (h *httpBackend) resolve(name string) (*url.URL, error) {
	if strings.HasPrefix(name, "http://") || strings.HasPrefix(name, "https://") {
		u, err := url.Parse(name)
		if err != nil {
			return nil, &permanentError{fmt.Errorf("%w: bad URL %q", ErrBadNarInfo, clip(name))}
		}
		return u, nil
	}
	if err := checkName(name); err != nil {
		return nil, &permanentError{err}
	}
	u := *h.base
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + name
	u.RawPath = ""
	return &u, nil
}

func (h *httpBackend) request(ctx context.Context, method string, u *url.URL, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, &permanentError{err}
	}
	req.Header.Set("User-Agent", "nix-aurora")
	if u.User == nil {
		if login, pw, ok := h.netrc.Credentials(u.Hostname()); ok {
			req.SetBasicAuth(login, pw)
		}
	}
	return req, nil
}

// stallGuard cancels a request when no progress is made for d. It starts
// when the request is sent, so it also bounds the wait for headers.
type stallGuard struct {
	cancel context.CancelCauseFunc
	timer  *time.Timer
	d      time.Duration
}

func newStallGuard(ctx context.Context, d time.Duration) (context.Context, *stallGuard) {
	ctx, cancel := context.WithCancelCause(ctx)
	g := &stallGuard{cancel: cancel, d: d}
	g.timer = time.AfterFunc(d, func() {
		cancel(fmt.Errorf("%w: no data for %v", ErrStalled, d))
	})
	return ctx, g
}

func (g *stallGuard) progress() { g.timer.Reset(g.d) }

func (g *stallGuard) stop() {
	g.timer.Stop()
	g.cancel(context.Canceled)
}

// stalled returns the stall error if the guard fired, else err.
func stalledOr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && errors.Is(cause, ErrStalled) {
		return cause
	}
	return err
}

type guardedBody struct {
	ctx    context.Context
	body   io.ReadCloser
	guard  *stallGuard
	length int64 // Content-Length, -1 when not sent
}

func (b *guardedBody) knownSize() int64 { return b.length }

func (b *guardedBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if n > 0 {
		b.guard.progress()
	}
	if err != nil && err != io.EOF {
		err = stalledOr(b.ctx, err)
	}
	return n, err
}

func (b *guardedBody) Close() error {
	b.guard.stop()
	return b.body.Close()
}

func (h *httpBackend) open(ctx context.Context, name string, off int64, narinfo bool) (io.ReadCloser, error) {
	u, err := h.resolve(name)
	if err != nil {
		return nil, err
	}
	rctx, guard := newStallGuard(ctx, h.stall)
	req, err := h.request(rctx, http.MethodGet, u, nil)
	if err != nil {
		guard.stop()
		return nil, err
	}
	if off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	resp, err := h.client.Do(req)
	if err != nil {
		err = certError(stalledOr(rctx, err), h.ca)
		guard.stop()
		return nil, err
	}
	guard.progress()
	ok := resp.StatusCode == http.StatusOK
	if off > 0 {
		ok = resp.StatusCode == http.StatusPartialContent && strings.HasPrefix(resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-", off))
	}
	if !ok {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		guard.stop()
		switch code := resp.StatusCode; {
		case code == http.StatusNotFound || code == http.StatusGone,
			narinfo && (code == http.StatusUnauthorized || code == http.StatusForbidden || code == http.StatusProxyAuthRequired):
			return nil, fmt.Errorf("%w: HTTP %s", ErrNotFound, resp.Status)
		case off > 0 && code == http.StatusOK:
			return nil, &permanentError{errors.New("the server does not support resuming downloads (Range)")}
		}
		return nil, &HTTPError{Method: http.MethodGet, URL: u.Redacted(), StatusCode: resp.StatusCode, Status: resp.Status}
	}
	return &guardedBody{ctx: rctx, body: resp.Body, guard: guard, length: resp.ContentLength}, nil
}

func (h *httpBackend) put(ctx context.Context, name, contentType string, size int64, body func() (io.ReadCloser, error)) error {
	u, err := h.resolve(name)
	if err != nil {
		return err
	}
	rc, err := body()
	if err != nil {
		return &permanentError{err}
	}
	rctx, guard := newStallGuard(ctx, h.stall)
	defer guard.stop()
	req, err := h.request(rctx, http.MethodPut, u, &progressReader{rc, guard})
	if err != nil {
		rc.Close()
		return err
	}
	req.ContentLength = size
	req.GetBody = func() (io.ReadCloser, error) { return body() }
	req.Header.Set("Content-Type", contentType)
	resp, err := h.client.Do(req)
	if err != nil {
		return certError(stalledOr(rctx, err), h.ca)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return &HTTPError{Method: http.MethodPut, URL: u.Redacted(), StatusCode: resp.StatusCode, Status: resp.Status}
	}
	return nil
}

type progressReader struct {
	rc    io.ReadCloser
	guard *stallGuard
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.rc.Read(b)
	if n > 0 {
		p.guard.progress()
	}
	return n, err
}

func (p *progressReader) Close() error { return p.rc.Close() }

// ---- retries ----

type retrier struct {
	attempts int
	delay    time.Duration
	logf     func(string, ...any)
}

// do runs op until it succeeds, fails permanently, or has been tried
// r.attempts times, backing off exponentially with jitter in between.
func (r retrier) do(ctx context.Context, what string, op func() error) error {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(r.delay),
		backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0.5),
		backoff.WithMaxInterval(maxRetryDelay),
		backoff.WithMaxElapsedTime(0),
	)
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil {
			return nil
		}
		if !IsTransient(err) || ctx.Err() != nil {
			var perm *permanentError
			if errors.As(err, &perm) && perm == err {
				return perm.err
			}
			return err
		}
		if attempt >= r.attempts {
			if attempt > 1 {
				return fmt.Errorf("%w (after %d attempts)", err, attempt)
			}
			return err
		}
		d := b.NextBackOff()
		if r.logf != nil {
			r.logf("%s: %v; retrying in %v (attempt %d of %d)", what, err, d.Round(time.Millisecond), attempt+1, r.attempts)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// parseBoolParam parses a Nix boolean store setting.
func parseBoolParam(s string) (bool, error) {
	switch s {
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a Boolean (true or false)", s)
}

func parseIntParam(s string) (int, error) { return strconv.Atoi(strings.TrimSpace(s)) }

// sizer is a body whose size is known before it is read (an HTTP
// Content-Length, a file's size); -1 when it is not.
type sizer interface{ knownSize() int64 }

// limitBody bounds what is read of a cache file: a body announced larger
// than max fails before any byte is read, and one that turns out larger
// fails as soon as it passes max, so that whatever a cache sends, at most
// max bytes of it are read. Both failures wrap ErrBadContent.
func limitBody(rc io.Reader, name string, max int64) (io.Reader, error) {
	tooLarge := fmt.Errorf("%w: %s is larger than %d bytes", ErrBadContent, name, max)
	if s, ok := rc.(sizer); ok {
		if n := s.knownSize(); n > max {
			return nil, fmt.Errorf("%w: %s is %d bytes, more than the %d allowed", ErrBadContent, name, n, max)
		}
	}
	return &capReader{r: rc, left: max, err: tooLarge}, nil
}

type capReader struct {
	r    io.Reader
	left int64
	err  error
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		// At the bound: a single byte more means too large.
		var b [1]byte
		n, err := c.r.Read(b[:])
		if n > 0 {
			return 0, c.err
		}
		return 0, err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}
