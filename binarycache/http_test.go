package binarycache

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/nar"
)

// httpCache serves a copy of one of the fixture's caches.
func httpCache(t *testing.T, comp string) (*fixture, *testServer, string) {
	f := getFixture(t)
	dir := copyDir(t, f.Caches[comp])
	return f, newServer(t, dir), dir
}

func rewriteNarInfo(t *testing.T, dir, storePath string, edit func(ni *NarInfo)) {
	t.Helper()
	file := narinfoFile(dir, storePath)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	ni, err := ParseNarInfo(b)
	if err != nil {
		t.Fatal(err)
	}
	edit(ni)
	if err := os.WriteFile(file, []byte(ni.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func fetchAndDownload(t *testing.T, c *Cache, p string) ([]byte, error) {
	t.Helper()
	ni, err := c.NarInfo(ctxT(t), p)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	_, err = c.Download(ctxT(t), ni, &buf)
	return buf.Bytes(), err
}

func TestHTTPRetries(t *testing.T) {
	f := getFixture(t)
	want := dumpPath(t, f.Dep)
	isData := func(r *http.Request) bool {
		return strings.HasSuffix(r.URL.Path, ".narinfo") || strings.HasPrefix(r.URL.Path, "/nar/")
	}
	cases := map[string]func(dir string) func(w http.ResponseWriter, r *http.Request, n int) bool{
		"503 on every other request": func(string) func(http.ResponseWriter, *http.Request, int) bool {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if isData(r) && n%2 == 1 {
					http.Error(w, "busy", http.StatusServiceUnavailable)
					return true
				}
				return false
			}
		},
		"429 then 500 then 408": func(string) func(http.ResponseWriter, *http.Request, int) bool {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if isData(r) && n <= 3 {
					http.Error(w, "x", []int{429, 500, 408}[n-1])
					return true
				}
				return false
			}
		},
		"connection reset": func(string) func(http.ResponseWriter, *http.Request, int) bool {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if isData(r) && n <= 2 {
					resetConn(w)
					return true
				}
				return false
			}
		},
		"truncated narinfo": func(dir string) func(http.ResponseWriter, *http.Request, int) bool {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if strings.HasSuffix(r.URL.Path, ".narinfo") && n == 1 {
					truncate(w, r, filepath.Join(dir, r.URL.Path), 40)
					return true
				}
				return false
			}
		},
	}
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			_, srv, dir := httpCache(t, "none")
			srv.setFault(mk(dir))
			c, err := Open(ctxT(t), srv.URL, fastOpts(f.PublicKey))
			if err != nil {
				t.Fatal(err)
			}
			got, err := fetchAndDownload(t, c, f.Dep)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("wrong bytes")
			}
			if srv.count(".narinfo") < 2 {
				t.Errorf("no retry seen: %q", srv.requests())
			}
		})
	}
}

func TestHTTPResumesTruncatedNar(t *testing.T) {
	f, srv, dir := httpCache(t, "none")
	var mu sync.Mutex
	var ranges []string
	srv.setFault(func(w http.ResponseWriter, r *http.Request, n int) bool {
		if !strings.HasPrefix(r.URL.Path, "/nar/") {
			return false
		}
		mu.Lock()
		ranges = append(ranges, r.Header.Get("Range"))
		mu.Unlock()
		if n <= 2 {
			truncate(w, r, filepath.Join(dir, r.URL.Path), 100000*n)
			return true
		}
		return false
	})
	c, err := Open(ctxT(t), srv.URL, fastOpts(f.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	got, err := fetchAndDownload(t, c, f.Dep)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, dumpPath(t, f.Dep)) {
		t.Fatal("wrong bytes")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ranges) != 3 || ranges[0] != "" || ranges[1] != "bytes=100000-" || ranges[2] != "bytes=200000-" {
		t.Errorf("Range headers %q", ranges)
	}
}

func TestHTTPTruncatedWithoutRange(t *testing.T) {
	f, srv, dir := httpCache(t, "none")
	srv.setFault(func(w http.ResponseWriter, r *http.Request, n int) bool {
		if strings.HasPrefix(r.URL.Path, "/nar/") {
			if r.Header.Get("Range") != "" {
				// A server ignoring Range: 200 with the whole file.
				b, _ := os.ReadFile(filepath.Join(dir, r.URL.Path))
				w.WriteHeader(http.StatusOK)
				w.Write(b)
				return true
			}
			truncate(w, r, filepath.Join(dir, r.URL.Path), 1000)
			return true
		}
		return false
	})
	c, err := Open(ctxT(t), srv.URL, fastOpts(f.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	_, err = fetchAndDownload(t, c, f.Dep)
	if err == nil || !IsTransient(err) {
		t.Fatalf("err = %v, want a transient error", err)
	}
	if !strings.Contains(err.Error(), "download NAR "+f.Dep+" from "+srv.URL) {
		t.Errorf("error lacks context: %v", err)
	}
}

func TestHTTPStall(t *testing.T) {
	f, srv, dir := httpCache(t, "none")
	opts := fastOpts(f.PublicKey)
	opts.StallTimeout = 300 * time.Millisecond
	opts.Attempts = 2
	c, err := Open(ctxT(t), srv.URL, opts)
	if err != nil {
		t.Fatal(err)
	}
	stall := func(r *http.Request) {
		select {
		case <-time.After(20 * time.Second):
		case <-r.Context().Done():
		}
	}
	// Headers, some bytes, then nothing.
	srv.setFault(func(w http.ResponseWriter, r *http.Request, n int) bool {
		if strings.HasPrefix(r.URL.Path, "/nar/") {
			b, _ := os.ReadFile(filepath.Join(dir, r.URL.Path))
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
			w.Write(b[:1000])
			w.(http.Flusher).Flush()
			stall(r)
			return true
		}
		return false
	})
	start := time.Now()
	_, err = fetchAndDownload(t, c, f.Dep)
	if !errors.Is(err, ErrStalled) || !IsTransient(err) {
		t.Fatalf("err = %v, want ErrStalled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	// No headers at all.
	srv.setFault(func(w http.ResponseWriter, r *http.Request, n int) bool {
		if strings.HasSuffix(r.URL.Path, ".narinfo") {
			stall(r)
			return true
		}
		return false
	})
	srv.resetLog()
	start = time.Now()
	_, err = c.NarInfo(ctxT(t), f.Dep)
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("err = %v, want ErrStalled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	if n := srv.count(".narinfo"); n != 2 {
		t.Errorf("%d narinfo requests, want 2 attempts", n)
	}
}

func TestHTTPBadNar(t *testing.T) {
	f := getFixture(t)
	cases := map[string]func(b []byte) []byte{
		"same size, other bytes": func(b []byte) []byte {
			b = bytes.Clone(b)
			i := bytes.Index(b, []byte("49999\n"))
			b[i] = '7'
			return b
		},
		"longer": func(b []byte) []byte { return append(bytes.Clone(b), make([]byte, 4096)...) },
		"shorter": func(b []byte) []byte {
			return b[:len(b)-8]
		},
		"not a NAR": func(b []byte) []byte { return bytes.Repeat([]byte{'x'}, len(b)) },
	}
	for name, corrupt := range cases {
		t.Run(name, func(t *testing.T) {
			_, srv, dir := httpCache(t, "none")
			c, err := Open(ctxT(t), srv.URL, fastOpts(f.PublicKey))
			if err != nil {
				t.Fatal(err)
			}
			ni, err := c.NarInfo(ctxT(t), f.Dep)
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, ni.URL)
			b, _ := os.ReadFile(file)
			os.WriteFile(file, corrupt(b), 0o644)
			rc, err := c.OpenNar(ctxT(t), ni)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			n, err := io.Copy(io.Discard, rc)
			if err == nil {
				t.Fatalf("accepted")
			}
			if name != "not a NAR" && !errors.Is(err, ErrHashMismatch) {
				t.Errorf("err = %v, want ErrHashMismatch", err)
			}
			if IsTransient(err) {
				t.Errorf("a hash mismatch is not transient: %v", err)
			}
			if uint64(n) > ni.NarSize {
				t.Errorf("returned %d bytes, more than NarSize %d", n, ni.NarSize)
			}
		})
	}
}

func TestHTTPStatuses(t *testing.T) {
	f, srv, _ := httpCache(t, "zstd")
	c, err := Open(ctxT(t), srv.URL, fastOpts(f.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		status   int
		notFound bool
		tries    int
	}{
		{404, true, 1}, {410, true, 1}, {403, true, 1}, {401, true, 1},
		{400, false, 1}, {501, false, 1}, {505, false, 1}, {502, false, DefaultAttempts},
	} {
		srv.resetLog()
		srv.setFault(func(w http.ResponseWriter, r *http.Request, n int) bool {
			http.Error(w, "nope", tc.status)
			return true
		})
		_, err := c.NarInfo(ctxT(t), f.Dep)
		if errors.Is(err, ErrNotFound) != tc.notFound {
			t.Errorf("HTTP %d: err = %v", tc.status, err)
		}
		if n := srv.count(".narinfo"); n != tc.tries {
			t.Errorf("HTTP %d: %d requests, want %d", tc.status, n, tc.tries)
		}
		if !strings.Contains(err.Error(), "fetch narinfo "+HashPart(f.Dep)+" from "+srv.URL) {
			t.Errorf("error lacks context: %v", err)
		}
	}
	// A 403 for a NAR is an error, not "not found".
	srv.setFault(nil)
	ni, err := c.NarInfo(ctxT(t), f.Dep)
	if err != nil {
		t.Fatal(err)
	}
	srv.setFault(func(w http.ResponseWriter, r *http.Request, n int) bool {
		if strings.HasPrefix(r.URL.Path, "/nar/") {
			http.Error(w, "nope", 403)
			return true
		}
		return false
	})
	if _, err := c.Download(ctxT(t), ni, io.Discard); err == nil || errors.Is(err, ErrNotFound) || IsTransient(err) {
		t.Errorf("403 NAR: %v", err)
	}
}

func TestConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	opts := fastOpts()
	opts.Attempts = 3
	_, err = Open(ctxT(t), "http://"+addr, opts)
	if err == nil || !IsTransient(err) || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Errorf("err = %v", err)
	}
}

func TestNarInfoChecks(t *testing.T) {
	f, srv, dir := httpCache(t, "zstd")
	other := genKey(t, "intruder-1")
	// StorePath not matching the hash asked for.
	b, _ := os.ReadFile(narinfoFile(dir, f.Dep))
	os.WriteFile(narinfoFile(dir, f.Tool), b, 0o644)
	// Signed by an unknown key only.
	rewriteNarInfo(t, dir, f.Lib, func(ni *NarInfo) { ni.Sigs = nil; Sign(ni, other) })
	// Unsigned.
	rewriteNarInfo(t, dir, f.App, func(ni *NarInfo) { ni.Sigs = nil })
	// A trusted key's name with a signature that is not 64 bytes.
	rewriteNarInfo(t, dir, f.Other, func(ni *NarInfo) { ni.Sigs = []string{"nxa-test-1:AAAA"} })

	c, err := Open(ctxT(t), srv.URL, fastOpts(f.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]error{f.Tool: ErrBadNarInfo, f.Lib: ErrUntrusted, f.App: ErrUntrusted, f.Other: ErrBadSignature} {
		if _, err := c.NarInfo(ctxT(t), p); !errors.Is(err, want) {
			t.Errorf("%s: err = %v, want %v", p, err, want)
		}
	}
	// Lookup skips such a cache for the next one, and says why when none
	// will do.
	var notes []string
	var mu sync.Mutex
	opts := fastOpts(f.PublicKey)
	opts.Logf = func(format string, args ...any) {
		mu.Lock()
		notes = append(notes, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	bad, _ := Open(ctxT(t), srv.URL+"?priority=1", opts)
	good, _ := Open(ctxT(t), "file://"+f.Caches["xz"]+"?priority=2", opts)
	cs := Caches{good, bad}
	cs.Sort()
	ni, c2, err := cs.Lookup(ctxT(t), f.Lib)
	if err != nil || c2 != good || ni.Compression != "xz" {
		t.Errorf("Lookup = %v, %v", c2, err)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "not signed by any of the keys") {
		t.Errorf("notes %q", notes)
	}
	_, _, err = Caches{bad}.Lookup(ctxT(t), f.App)
	if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), srv.URL) {
		t.Errorf("unsigned everywhere: %v", err)
	}
	_, _, err = Caches{bad}.Lookup(ctxT(t), f.Other)
	if !errors.Is(err, ErrBadSignature) {
		t.Errorf("bad signature: %v", err)
	}
	os.Remove(narinfoFile(dir, f.Dep))
	_, _, err = Caches{bad}.Lookup(ctxT(t), f.Dep)
	if !errors.Is(err, ErrNotFound) || IsTransient(err) {
		t.Errorf("missing: %v", err)
	}
}

func TestNetrcAuth(t *testing.T) {
	f, srv, _ := httpCache(t, "zstd")
	srv.user, srv.pass = "alice", "s3cret"
	if _, err := Open(ctxT(t), srv.URL, fastOpts(f.PublicKey)); err == nil {
		t.Fatal("opened without credentials")
	}
	opts := fastOpts(f.PublicKey)
	opts.Netrc, _ = ParseNetrc("machine 127.0.0.1 login alice password s3cret\n")
	c, err := Open(ctxT(t), srv.URL, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fetchAndDownload(t, c, f.Dep); err != nil {
		t.Fatal(err)
	}
	opts.Netrc, _ = ParseNetrc("machine 127.0.0.1 login alice password wrong\n")
	if _, err := Open(ctxT(t), srv.URL, opts); err == nil {
		t.Fatal("opened with a wrong password")
	}
}

func TestPriorities(t *testing.T) {
	f := getFixture(t)
	mk := func(info string) string {
		dir := copyDir(t, f.Caches["zstd"])
		if info != "" {
			os.WriteFile(filepath.Join(dir, "nix-cache-info"), []byte(info), 0o644)
		}
		return dir
	}
	a := mk("StoreDir: /nix/store\nPriority: 30\nWantMassQuery: 1\n")
	b := mk("StoreDir: /nix/store\nPriority: 10\n")
	c := mk("") // nix copy's: no Priority, so 0
	d := mk("Priority: 50\n")
	os.Remove(narinfoFile(b, f.Dep))
	urls := []string{"file://" + a, "file://" + b, "file://" + d + "?priority=20&want-mass-query=true", "file://" + c + "/"}
	cs, err := OpenAll(ctxT(t), urls, fastOpts(f.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, x := range cs {
		got = append(got, fmt.Sprintf("%s=%d,%v", strings.TrimPrefix(x.URL(), "file://"), x.Priority(), x.WantMassQuery()))
	}
	want := []string{c + "=0,false", b + "=10,false", d + "=20,true", a + "=30,true"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("order %q\nwant  %q", got, want)
	}
	// c (priority 0) has everything.
	if _, from, err := cs.Lookup(ctxT(t), f.Dep); err != nil || from != cs[0] {
		t.Errorf("Lookup dep: %v from %v", err, from)
	}
	// Without c, dep comes from d: b lacks it.
	if _, from, err := cs[1:].Lookup(ctxT(t), f.Dep); err != nil || from != cs[2] {
		t.Errorf("Lookup dep without c: %v from %v", err, from)
	}
	// Stable among equal priorities.
	e := mk("Priority: 10\n")
	cs2, _ := OpenAll(ctxT(t), []string{"file://" + e, "file://" + b}, fastOpts())
	if cs2[0].URL() != "file://"+e {
		t.Errorf("equal priorities reordered")
	}
	// A cache that cannot be opened is left out, with an error.
	cs3, err := OpenAll(ctxT(t), []string{"file://" + t.TempDir(), "file://" + a}, fastOpts())
	if err == nil || len(cs3) != 1 {
		t.Errorf("OpenAll with a bad cache: %v, %d", err, len(cs3))
	}
}

// A body that breaks or stalls before its first byte every time is given
// up after Attempts tries, not resumed for ever.
func TestHTTPNoProgressIsBounded(t *testing.T) {
	f := getFixture(t)
	cases := map[string]func(dir string) func(w http.ResponseWriter, r *http.Request, n int) bool{
		"cut at byte 0": func(dir string) func(http.ResponseWriter, *http.Request, int) bool {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if strings.HasPrefix(r.URL.Path, "/nar/") {
					truncate(w, r, filepath.Join(dir, r.URL.Path), 0)
					return true
				}
				return false
			}
		},
		"stalled body": func(dir string) func(http.ResponseWriter, *http.Request, int) bool {
			return func(w http.ResponseWriter, r *http.Request, n int) bool {
				if strings.HasPrefix(r.URL.Path, "/nar/") {
					w.Header().Set("Content-Length", "1000")
					w.WriteHeader(http.StatusOK)
					w.(http.Flusher).Flush()
					select {
					case <-time.After(20 * time.Second):
					case <-r.Context().Done():
					}
					return true
				}
				return false
			}
		},
	}
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			_, srv, dir := httpCache(t, "none")
			srv.setFault(mk(dir))
			opts := fastOpts(f.PublicKey)
			opts.Attempts = 3
			opts.StallTimeout = 200 * time.Millisecond
			c, err := Open(ctxT(t), srv.URL, opts)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = fetchAndDownload(t, c, f.Dep)
			if err == nil || !IsTransient(err) || !strings.Contains(err.Error(), "no progress at byte 0 after 3 attempts") {
				t.Fatalf("err = %v", err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
			// One request per attempt; on a loaded machine a reopen can
			// itself stall past the 200 ms and be retried (at most
			// Attempts times per resume), so that is the bound.
			if n := srv.count("/nar/"); n < 3 || n > 3*3 {
				t.Errorf("%d NAR requests, want 3 (at most 9 with slow reopens)", n)
			}
		})
	}
}

// A NAR whose bytes match its signed narinfo but that is not a canonical
// NAR fails permanently, even when it reads as truncated.
func TestHTTPVerifiedMalformedNar(t *testing.T) {
	f := getFixture(t)
	u64 := func(n int) []byte { return binary.LittleEndian.AppendUint64(nil, uint64(n)) }
	str := func(s string) []byte { return append(append(u64(len(s)), s...), make([]byte, (8-len(s)%8)%8)...) }
	var endsMidFile []byte
	for _, tok := range []string{nar.Magic, "(", "type", "regular", "contents"} {
		endsMidFile = append(endsMidFile, str(tok)...)
	}
	endsMidFile = append(append(endsMidFile, u64(100)...), "abcdefgh"...)
	dotdot := slices.Concat(str(nar.Magic), str("("), str("type"), str("directory"), str("entry"), str("("),
		str("name"), str(".."), str("node"), str("("), str("type"), str("regular"), str("contents"), str("x"),
		str(")"), str(")"), str(")"))
	for name, data := range map[string][]byte{"ends mid-file": endsMidFile, "dot-dot": dotdot} {
		t.Run(name, func(t *testing.T) {
			_, srv, dir := httpCache(t, "none")
			sum := sha256.Sum256(data)
			rewriteNarInfo(t, dir, f.Dep, func(ni *NarInfo) {
				ni.URL = "nar/hostile.nar"
				ni.Compression = "none"
				ni.FileHash, ni.FileSize, ni.Sigs = "", 0, nil
				ni.NarHash = "sha256:" + nix32(sum[:])
				ni.NarSize = uint64(len(data))
				if err := Sign(ni, f.SecretKey); err != nil {
					t.Fatal(err)
				}
			})
			if err := os.WriteFile(filepath.Join(dir, "nar/hostile.nar"), data, 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := Open(ctxT(t), srv.URL, fastOpts(f.PublicKey))
			if err != nil {
				t.Fatal(err)
			}
			_, err = fetchAndDownload(t, c, f.Dep)
			if !errors.Is(err, nar.ErrInvalid) || IsTransient(err) || errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("err = %v (transient %v), want a permanent nar.ErrInvalid", err, IsTransient(err))
			}
			if n := srv.count("/nar/"); n != 1 {
				t.Errorf("%d NAR requests, want 1", n)
			}
		})
	}
}

func TestRememberNarInfos(t *testing.T) {
	f, srv, _ := httpCache(t, "zstd")
	for _, remember := range []bool{false, true} {
		opts := fastOpts(f.PublicKey)
		opts.RememberNarInfos = remember
		c, err := Open(ctxT(t), srv.URL, opts)
		if err != nil {
			t.Fatal(err)
		}
		srv.resetLog()
		for range 3 {
			if _, err := c.NarInfo(ctxT(t), f.Dep); err != nil {
				t.Fatal(err)
			}
		}
		// What failed is asked again: only a verified narinfo is kept.
		for range 2 {
			if _, err := c.NarInfo(ctxT(t), "/nix/store/"+strings.Repeat("0", 32)+"-missing"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("a path the cache lacks: err = %v, want ErrNotFound", err)
			}
		}
		want, known := 3+2, 0
		if remember {
			want, known = 1+2, 1
		}
		if n := srv.count(".narinfo"); n != want {
			t.Errorf("RememberNarInfos=%v: %d narinfo requests, want %d", remember, n, want)
		}
		if n := c.KnownNarInfos(); n != known {
			t.Errorf("RememberNarInfos=%v: KnownNarInfos() = %d, want %d", remember, n, known)
		}
	}
}
