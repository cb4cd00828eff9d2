package binarycache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/internal/testnix"
	"github.com/nix-aurora/nix-aurora/store"
)

// fixtureRoot holds what the tests of this package share: the built
// closure's GC roots, the key pair and the caches made by `nix copy`.
var fixtureRoot string

func TestMain(m *testing.M) {
	code := m.Run()
	if fixtureRoot != "" {
		os.RemoveAll(fixtureRoot)
	}
	os.Exit(code)
}

// closureExpr builds five paths: app -> {lib, tool} -> dep, and a second
// root, other -> dep. dep holds ~290 KB so that its NAR spans many reads.
const closureExpr = `
let
  mk = name: script: derivation {
    inherit name; system = builtins.currentSystem; builder = "/bin/sh";
    PATH = "/usr/bin:/bin"; args = [ "-c" script ];
  };
  dep = mk "nxa-bc-dep" "mkdir $out; seq 1 50000 > $out/data; echo hello > $out/hello";
  lib = mk "nxa-bc-lib" "mkdir -p $out/lib; echo ${dep} > $out/lib/ref; ln -s ${dep}/hello $out/lib/link";
  tool = mk "nxa-bc-tool" "mkdir -p $out/bin; printf '#!/bin/sh\\ncat ${dep}/hello\\n' > $out/bin/tool; chmod +x $out/bin/tool";
  app = mk "nxa-bc-app" "echo ${lib} ${tool} > $out";
  other = mk "nxa-bc-other" "echo ${dep} > $out";
in { inherit dep lib tool app other; }
`

type fixture struct {
	App, Other, Lib, Tool, Dep string
	Closure                    []string // of App
	SK, PK                     string   // key files
	PublicKey                  PublicKey
	SecretKey                  SecretKey
	Caches                     map[string]string // compression -> dir made by nix copy
}

var (
	fixOnce sync.Once
	fix     *fixture
	fixErr  error
)

var compressions = []string{"none", "xz", "bzip2", "zstd", "gzip", "br"}

// nixEnv is the environment of every nix command: a fresh HOME and cache
// directory, so that Nix's per-user narinfo cache cannot leak between
// tests.
func nixEnv(t testing.TB) []string {
	home := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "XDG_CACHE_HOME=") && !strings.HasPrefix(kv, "NIX_REMOTE=") {
			env = append(env, kv)
		}
	}
	return append(env, "HOME="+home, "XDG_CACHE_HOME="+filepath.Join(home, "cache"))
}

func runNix(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

func getFixture(t *testing.T) *fixture {
	t.Helper()
	testnix.Require(t)
	fixOnce.Do(func() {
		fixErr = buildFixture(t)
	})
	if fixErr != nil {
		t.Fatal(fixErr)
	}
	return fix
}

func buildFixture(t *testing.T) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("building the fixture: %v", r)
		}
	}()
	dir, err := os.MkdirTemp("", "nxa-bc-")
	if err != nil {
		return err
	}
	fixtureRoot = dir
	env := nixEnv(t)
	expr := filepath.Join(dir, "closure.nix")
	if err := os.WriteFile(expr, []byte(closureExpr), 0o644); err != nil {
		return err
	}
	// -o keeps the outputs rooted while the tests run.
	cmd := exec.Command("nix-build", "--option", "substituters", "", expr,
		"-A", "app", "-A", "other", "-A", "lib", "-A", "tool", "-A", "dep", "-o", filepath.Join(dir, "result"))
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("nix-build: %v\n%s", err, stderr.String())
	}
	paths := strings.Fields(string(out))
	if len(paths) != 5 {
		return fmt.Errorf("nix-build printed %q", out)
	}
	f := &fixture{App: paths[0], Other: paths[1], Lib: paths[2], Tool: paths[3], Dep: paths[4], Caches: map[string]string{}}
	f.Closure = strings.Fields(runNixPanics(env, "nix-store", "-qR", f.App))
	f.SK, f.PK = filepath.Join(dir, "sk"), filepath.Join(dir, "pk")
	runNixPanics(env, "nix-store", "--generate-binary-cache-key", "nxa-test-1", f.SK, f.PK)
	if f.SecretKey, err = LoadSecretKey(f.SK); err != nil {
		return err
	}
	pk, err := os.ReadFile(f.PK)
	if err != nil {
		return err
	}
	if f.PublicKey, err = ParsePublicKey(string(pk)); err != nil {
		return err
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, comp := range compressions {
		cdir := filepath.Join(dir, "cache-"+comp)
		f.Caches[comp] = cdir
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := []string{"--experimental-features", "nix-command", "copy", "--to",
				"file://" + cdir + "?compression=" + comp + "&secret-key=" + f.SK, f.App, f.Other}
			cmd := exec.Command("nix", args...)
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("nix copy (%s): %v\n%s", comp, err, out))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return errs[0]
	}
	fix = f
	return nil
}

func runNixPanics(env []string, name string, args ...string) string {
	cmd := exec.Command(name, args...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		panic(fmt.Sprintf("%s %v: %v\n%s", name, args, err, stderr.String()))
	}
	return strings.TrimSpace(string(out))
}

// copyDir copies a cache directory, so that a test may tamper with it.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func narinfoFile(dir, storePath string) string {
	return filepath.Join(dir, HashPart(storePath)+".narinfo")
}

func dumpPath(t testing.TB, p string) []byte {
	t.Helper()
	out, err := exec.Command("nix-store", "--dump", p).Output()
	if err != nil {
		t.Fatalf("nix-store --dump %s: %v", p, err)
	}
	return out
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fastOpts are Options with short delays for tests.
func fastOpts(keys ...PublicKey) Options {
	return Options{
		TrustedKeys:  keys,
		RetryDelay:   5 * time.Millisecond,
		StallTimeout: 5 * time.Second,
		HTTPClient:   NewHTTPClient(2 * time.Second),
	}
}

// ---- an HTTP cache with fault injection ----

type testServer struct {
	*httptest.Server
	dir      string
	allowPut bool
	user     string // Basic auth required when set
	pass     string

	mu          sync.Mutex
	log         []string // "METHOD /path"
	inflight    int
	maxInflight int
	fault       func(w http.ResponseWriter, r *http.Request, n int) bool // n: requests to this path so far (1-based)
	counts      map[string]int
	bodyDelay   func(path string) time.Duration
}

func newServer(t testing.TB, dir string) *testServer {
	s := &testServer{dir: dir, counts: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Server = &httptest.Server{Listener: ln, Config: &http.Server{Handler: s}}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func (s *testServer) setFault(f func(w http.ResponseWriter, r *http.Request, n int) bool) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
}

func (s *testServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

func (s *testServer) count(substr string) int {
	n := 0
	for _, r := range s.requests() {
		if strings.Contains(r, substr) {
			n++
		}
	}
	return n
}

func (s *testServer) resetLog() {
	s.mu.Lock()
	s.log = nil
	s.counts = map[string]int{}
	s.maxInflight = 0
	s.mu.Unlock()
}

func (s *testServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.log = append(s.log, r.Method+" "+r.URL.Path)
	s.counts[r.URL.Path]++
	n := s.counts[r.URL.Path]
	s.inflight++
	if s.inflight > s.maxInflight {
		s.maxInflight = s.inflight
	}
	fault, delay := s.fault, s.bodyDelay
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inflight--
		s.mu.Unlock()
	}()
	if s.user != "" {
		u, p, ok := r.BasicAuth()
		if !ok || u != s.user || p != s.pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="cache"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
	}
	if fault != nil && fault(w, r, n) {
		return
	}
	rel := strings.TrimPrefix(r.URL.Path, "/")
	if rel == "" || strings.Contains(rel, "..") {
		http.NotFound(w, r)
		return
	}
	file := filepath.Join(s.dir, filepath.FromSlash(rel))
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if delay != nil {
			if d := delay(r.URL.Path); d > 0 {
				// Headers first, then a stalled body (so that clients can
				// send other requests meanwhile).
				b, err := os.ReadFile(file)
				if err != nil {
					http.NotFound(w, r)
					return
				}
				w.Header().Set("Content-Length", fmt.Sprint(len(b)))
				w.WriteHeader(http.StatusOK)
				w.(http.Flusher).Flush()
				select {
				case <-time.After(d):
				case <-r.Context().Done():
					return
				}
				w.Write(b)
				return
			}
		}
		if fi, err := os.Stat(file); err != nil || fi.IsDir() {
			http.NotFound(w, r)
			return
		}
		http.ServeFile(w, r, file)
	case http.MethodPut:
		if !s.allowPut {
			http.Error(w, "read-only", http.StatusMethodNotAllowed)
			return
		}
		os.MkdirAll(filepath.Dir(file), 0o755)
		tmp := file + ".part"
		f, err := os.Create(tmp)
		if err == nil {
			_, err = io.Copy(f, r.Body)
			f.Close()
		}
		if err == nil {
			err = os.Rename(tmp, file)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated)
	default:
		http.Error(w, "method", http.StatusMethodNotAllowed)
	}
}

// resetConn closes the client's connection without an HTTP answer.
func resetConn(w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetLinger(0) // RST rather than FIN
		}
		conn.Close()
	}
}

// truncate answers with the file's full Content-Length (or, for a Range
// request "bytes=N-", a 206 for the rest) but sends only the bytes before
// offset keep, then closes the connection.
func truncate(w http.ResponseWriter, r *http.Request, file string, keep int) {
	b, _ := os.ReadFile(file)
	start := 0
	if rg := r.Header.Get("Range"); rg != "" {
		fmt.Sscanf(rg, "bytes=%d-", &start)
	}
	conn, brw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	if start > 0 {
		fmt.Fprintf(brw, "HTTP/1.1 206 Partial Content\r\nContent-Length: %d\r\nContent-Range: bytes %d-%d/%d\r\n\r\n",
			len(b)-start, start, len(b)-1, len(b))
	} else {
		fmt.Fprintf(brw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nAccept-Ranges: bytes\r\n\r\n", len(b))
	}
	brw.Write(b[start:max(start, min(keep, len(b)))])
	brw.Flush()
}

// spawnStore connects to the host store through nix-daemon --stdio.
func spawnStore(t testing.TB) *store.Conn {
	t.Helper()
	c, err := store.Spawn(ctxT(t), store.StdioOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
