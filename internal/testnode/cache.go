package testnode

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/internal/testnix"
)

// CacheOptions configure NewCache. The zero value is a zstd-compressed,
// signed, read-only cache.
type CacheOptions struct {
	// Compression is the `compression=` of `nix copy`: zstd (default), xz,
	// bzip2, br, gzip or none.
	Compression string
	// NoSign leaves the paths unsigned (no Sig lines in the narinfos).
	NoSign bool
	// KeyName is the signing key's name; default "testnode-<random>-1",
	// unique per cache.
	KeyName string
	// Writable makes the server accept PUT (what `nix copy --to http://…`
	// and uploaders send): the body is written atomically to Dir.
	Writable bool
}

// Request is one HTTP request the cache received.
type Request struct {
	Method string
	Path   string // URL path, e.g. "/nix-cache-info", "/<hash>.narinfo", "/nar/….nar.zst"
	Status int    // status sent, 0 if none was (dropped, or still running)
	Fault  string // the injected fault, "" when served normally
	Time   time.Time
}

// Cache is a binary cache made by `nix copy` and served over HTTP/1.1 on
// 127.0.0.1, with fault injection. Its methods are safe for concurrent use.
//
// How a request is answered: it is logged (Requests, Log); then the Latency
// delay passes (before anything is sent); then the first live fault rule
// whose match is in the path applies, in the order the rules were added
// (Fail, FailMatching, FailFor, Drop), counting one request against it;
// otherwise GET/HEAD serve the file under Dir (404 if missing or a
// directory; Range requests work), with StallBody (or StallBodyMatching)
// holding the body of 2xx answers, and PUT writes it if the cache is Writable. A fault status gets
// a short text body. Down/SetDown act on the listener and connections, not
// on single requests. Requests stalled by Latency or StallBody end when the
// server goes down or the client leaves.
type Cache struct {
	URL           string // http://127.0.0.1:PORT (no trailing slash)
	Dir           string // the cache's files; FileURL() is file://Dir
	KeyName       string
	PublicKey     string // "name:base64", for trusted-public-keys
	PublicKeyFile string
	SecretKeyFile string
	Compression   string

	opts CacheOptions
	addr string

	mu         sync.Mutex
	srv        *http.Server  // nil while down
	stop       chan struct{} // closed when the current server goes down
	closed     bool
	upTimer    *time.Timer
	upErr      error
	log        []Request
	rules      []*faultRule
	latency    time.Duration
	stall      time.Duration
	stallMatch string // the paths StallBody holds ("" = all)
	active     int    // handlers running
	servers    sync.WaitGroup
}

type faultRule struct {
	match  string // substring of the path; "" matches all
	status int    // 0 = drop the connection
	left   int    // requests left; < 0 = unlimited until `until`
	until  time.Time
}

// NewCache generates a signing key, copies paths (with their closures) from
// the host store into a new file:// cache with `nix copy`, and serves it on
// 127.0.0.1:0 until the test ends. nix-cache-info always exists (with just
// StoreDir), even for a cache made without paths.
func NewCache(t testing.TB, opts CacheOptions, paths ...string) *Cache {
	t.Helper()
	testnix.Require(t)
	base := shortTempDir(t, "tn-cache-")
	c := &Cache{
		Dir:           filepath.Join(base, "cache"),
		KeyName:       opts.KeyName,
		PublicKeyFile: filepath.Join(base, "pk"),
		SecretKeyFile: filepath.Join(base, "sk"),
		Compression:   opts.Compression,
		opts:          opts,
	}
	if c.KeyName == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.KeyName = "testnode-" + hex.EncodeToString(b[:]) + "-1"
	}
	if c.Compression == "" {
		c.Compression = "zstd"
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mustRun(t, baseEnv(), "nix-store", "--generate-binary-cache-key", c.KeyName, c.SecretKeyFile, c.PublicKeyFile)
	pk, err := os.ReadFile(c.PublicKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	c.PublicKey = strings.TrimSpace(string(pk))
	if err := os.WriteFile(filepath.Join(c.Dir, "nix-cache-info"), []byte("StoreDir: /nix/store\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Add(t, paths...)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testnode: listening for the cache: %v", err)
	}
	c.addr = ln.Addr().String()
	c.URL = "http://" + c.addr
	c.mu.Lock()
	c.serveLocked(ln)
	c.mu.Unlock()
	t.Cleanup(func() { c.close(t) })
	return c
}

// FileURL is the cache as a file:// store URL (no HTTP, no faults).
func (c *Cache) FileURL() string { return "file://" + c.Dir }

// Add copies more paths (with their closures) from the host store into the
// cache, signed unless the cache is NoSign. Paths already there are skipped.
func (c *Cache) Add(t testing.TB, paths ...string) {
	t.Helper()
	if len(paths) == 0 {
		return
	}
	to := "file://" + c.Dir + "?compression=" + c.Compression
	if !c.opts.NoSign {
		to += "&secret-key=" + c.SecretKeyFile
	}
	mustRun(t, append(baseEnv(), "HOME="+filepath.Dir(c.Dir)), "nix", append([]string{
		"--experimental-features", "nix-command", "copy", "--to", to}, paths...)...)
}

// NarinfoFile is where the narinfo of storePath is (or would be) in Dir.
func (c *Cache) NarinfoFile(storePath string) string {
	return filepath.Join(c.Dir, hashPart(storePath)+".narinfo")
}

// NarFile is the file of storePath's NAR in Dir, read from its narinfo's URL.
func (c *Cache) NarFile(t testing.TB, storePath string) string {
	t.Helper()
	f, err := os.Open(c.NarinfoFile(storePath))
	if err != nil {
		t.Fatalf("testnode: %s is not in the cache: %v", storePath, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "URL: "); ok {
			return filepath.Join(c.Dir, filepath.FromSlash(u))
		}
	}
	t.Fatalf("testnode: the narinfo of %s has no URL", storePath)
	return ""
}

// Fail makes the next n requests (any path) answer status.
func (c *Cache) Fail(status, n int) { c.FailMatching("", status, n) }

// FailMatching makes the next n requests whose path contains match (""
// matches all, ".narinfo" the narinfos, "/nar/" the NARs) answer status.
func (c *Cache) FailMatching(match string, status, n int) {
	c.addRule(&faultRule{match: match, status: status, left: n})
}

// FailFor makes every request answer status for the duration d from now.
func (c *Cache) FailFor(status int, d time.Duration) {
	c.addRule(&faultRule{status: status, left: -1, until: time.Now().Add(d)})
}

// Drop makes the next n requests whose path contains match be answered by
// resetting the connection (TCP RST, no response): what curl reports as
// "Connection reset by peer" / "Recv failure".
func (c *Cache) Drop(match string, n int) {
	c.addRule(&faultRule{match: match, status: 0, left: n})
}

func (c *Cache) addRule(r *faultRule) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rules = append(c.rules, r)
}

// Latency delays every response, before its headers, by d (0 turns it
// off). Note that curl in Nix 2.8 (CURLOPT_PIPEWAIT) waits for the first
// response on a connection before opening more, so a delay before the
// headers serialises Nix's parallel requests; use StallBody to measure
// parallelism.
func (c *Cache) Latency(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.latency = d
}

// StallBody makes every successful GET send its headers at once, then wait d
// before sending the body (0 turns it off).
func (c *Cache) StallBody(d time.Duration) { c.StallBodyMatching("", d) }

// StallBodyMatching is StallBody for the GETs whose path contains match
// ("/nar/" holds only the NARs, so that a client gets stuck downloading
// rather than planning). It replaces any earlier stall.
func (c *Cache) StallBodyMatching(match string, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stall, c.stallMatch = d, match
}

// Down takes the server down for d: the listener and all open connections
// are closed at once, so connections are refused, and after d it listens
// again on the same port. (Another process could grab the port meanwhile;
// that is reported as a test error at cleanup.)
func (c *Cache) Down(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.downLocked()
	c.upTimer = time.AfterFunc(d, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if err := c.upLocked(); err != nil {
			c.upErr = err
		}
	})
}

// SetDown takes the server down (see Down) until SetDown(false), which
// listens again on the same port and returns an error if it cannot.
func (c *Cache) SetDown(down bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if down {
		c.downLocked()
		return nil
	}
	return c.upLocked()
}

// Reset removes every fault, latency and stall, clears the request log, and
// brings the server up if it was down.
func (c *Cache) Reset() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rules, c.log, c.latency, c.stall, c.stallMatch = nil, nil, 0, 0, ""
	return c.upLocked()
}

// Requests is the log of request paths, in arrival order, including the
// faulted ones.
func (c *Cache) Requests() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.log))
	for i, r := range c.log {
		out[i] = r.Path
	}
	return out
}

// Log is the detailed request log, in arrival order.
func (c *Cache) Log() []Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Request(nil), c.log...)
}

// Count is the number of logged requests whose path contains match.
func (c *Cache) Count(match string) int {
	n := 0
	for _, p := range c.Requests() {
		if strings.Contains(p, match) {
			n++
		}
	}
	return n
}

// serveLocked starts serving on ln.
func (c *Cache) serveLocked(ln net.Listener) {
	stop := make(chan struct{})
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { c.serve(w, r, stop) }),
		ReadHeaderTimeout: 30 * time.Second,
	}
	c.srv, c.stop = srv, stop
	c.servers.Add(1)
	go func() {
		defer c.servers.Done()
		_ = srv.Serve(ln)
	}()
}

func (c *Cache) downLocked() {
	if c.upTimer != nil {
		c.upTimer.Stop()
		c.upTimer = nil
	}
	if c.srv != nil {
		close(c.stop)
		_ = c.srv.Close() // closes the listener and every connection
		c.srv = nil
	}
}

func (c *Cache) upLocked() error {
	if c.upTimer != nil {
		c.upTimer.Stop()
		c.upTimer = nil
	}
	if c.srv != nil || c.closed {
		return nil
	}
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; {
		if ln, err = net.Listen("tcp", c.addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("testnode: the cache cannot listen again on %s: %w", c.addr, err)
	}
	c.serveLocked(ln)
	return nil
}

func (c *Cache) close(t testing.TB) {
	c.mu.Lock()
	c.downLocked()
	c.closed = true
	upErr := c.upErr
	c.mu.Unlock()
	if upErr != nil {
		t.Errorf("%v", upErr)
	}
	c.servers.Wait() // Serve returns as soon as its server is closed
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		c.mu.Lock()
		active := c.active
		c.mu.Unlock()
		if active == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("testnode: %d cache handlers still running 10s after the cache closed", active)
			return
		}
	}
}

// serve answers one request: faults first, then the file.
func (c *Cache) serve(w http.ResponseWriter, r *http.Request, stop chan struct{}) {
	now := time.Now()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		resetConn(w)
		return
	}
	c.active++
	defer func() {
		c.mu.Lock()
		c.active--
		c.mu.Unlock()
	}()
	idx := len(c.log)
	c.log = append(c.log, Request{Method: r.Method, Path: r.URL.Path, Time: now})
	// The first live rule that matches applies; spent rules are dropped.
	var rule *faultRule
	live := c.rules[:0]
	for _, f := range c.rules {
		if f.left == 0 || (f.left < 0 && !now.Before(f.until)) {
			continue
		}
		if rule == nil && strings.Contains(r.URL.Path, f.match) {
			rule = f
			if f.left > 0 {
				f.left--
			}
		}
		if f.left != 0 {
			live = append(live, f)
		}
	}
	c.rules = live
	latency, stall := c.latency, c.stall
	if !strings.Contains(r.URL.Path, c.stallMatch) {
		stall = 0
	}
	c.mu.Unlock()

	setLog := func(status int, fault string) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if idx < len(c.log) { // Reset may have cleared the log
			c.log[idx].Status, c.log[idx].Fault = status, fault
		}
	}
	if !sleep(r, stop, latency) {
		return
	}
	if rule != nil {
		if rule.status == 0 {
			setLog(0, "drop")
			resetConn(w)
			return
		}
		setLog(rule.status, fmt.Sprintf("status %d", rule.status))
		http.Error(w, fmt.Sprintf("testnode: injected fault: %d %s", rule.status, http.StatusText(rule.status)), rule.status)
		return
	}

	rel := path.Clean("/" + r.URL.Path)
	file := filepath.Join(c.Dir, filepath.FromSlash(rel))
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		f, err := os.Open(file)
		if err != nil {
			setLog(http.StatusNotFound, "")
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil || st.IsDir() {
			setLog(http.StatusNotFound, "")
			http.NotFound(w, r)
			return
		}
		sw := &statusWriter{ResponseWriter: w}
		if stall > 0 && r.Method == http.MethodGet {
			sw.onHeader = func(code int) bool {
				if code/100 != 2 {
					return true
				}
				if fl, ok := w.(http.Flusher); ok {
					fl.Flush()
				}
				return sleep(r, stop, stall)
			}
		}
		http.ServeContent(sw, r, rel, st.ModTime(), f)
		setLog(sw.code(), "")
	case http.MethodPut:
		if !c.opts.Writable {
			setLog(http.StatusMethodNotAllowed, "")
			http.Error(w, "testnode: this cache is read-only", http.StatusMethodNotAllowed)
			return
		}
		if err := writeAtomic(file, r.Body); err != nil {
			setLog(http.StatusInternalServerError, "")
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		setLog(http.StatusOK, "")
		w.WriteHeader(http.StatusOK)
	default:
		setLog(http.StatusMethodNotAllowed, "")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// sleep waits d unless the request or the server ends first; it reports
// whether the wait ran to the end.
func sleep(r *http.Request, stop chan struct{}, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-r.Context().Done():
	case <-stop:
	}
	return false
}

// resetConn closes the client's connection with an RST.
func resetConn(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// statusWriter records the status and can hold the body after the headers.
type statusWriter struct {
	http.ResponseWriter
	status   int
	onHeader func(code int) bool // false: abandon the body
	aborted  bool
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
	if s.onHeader != nil && !s.onHeader(code) {
		s.aborted = true
	}
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	if s.aborted {
		return 0, errors.New("testnode: request abandoned")
	}
	return s.ResponseWriter.Write(b)
}

// ReadFrom lets http.ServeContent send files with sendfile, as a real
// cache's server does: copying every body through user space made the
// test server itself a bottleneck of the benchmarks, on the cores that
// the clients under test need.
func (s *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	if s.aborted {
		return 0, errors.New("testnode: request abandoned")
	}
	if rf, ok := s.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{s.ResponseWriter}, r)
}

func (s *statusWriter) code() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}

func writeAtomic(file string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), ".put-*")
	if err != nil {
		return err
	}
	if _, err := io.Copy(tmp, r); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}
