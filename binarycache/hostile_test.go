package binarycache

// Hostile and broken caches: special files in file:// caches, endless or
// oversized files over HTTP, closure indexes that never close. Each must
// fail (or be ignored) at once, reading a bounded number of bytes.

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/internal/testnode"
)

// promptly runs op and fails the test if it has not returned within a few
// seconds; unblock is called then, so that a blocked op can end.
func promptly[T any](t *testing.T, what string, unblock func(), op func() (T, error)) (T, error) {
	t.Helper()
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := op()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-time.After(5 * time.Second):
		t.Errorf("%s: still blocked after 5s", what)
		unblock()
		select {
		case r := <-done:
			return r.v, r.err
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: blocked even after unblocking", what)
		}
	}
	panic("unreachable")
}

// unblockFIFO opens a FIFO for writing (without blocking) and closes it,
// which ends a reader's open of it.
func unblockFIFO(p string) func() {
	return func() {
		fd, err := syscall.Open(p, syscall.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err == nil {
			syscall.Close(fd)
		}
	}
}

// makeSpecial replaces p by a special file of the given kind.
func makeSpecial(t *testing.T, p, kind string) func() {
	t.Helper()
	if err := os.RemoveAll(p); err != nil {
		t.Fatal(err)
	}
	switch kind {
	case "fifo":
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Fatal(err)
		}
		return unblockFIFO(p)
	case "symlink to a fifo":
		target := p + ".target"
		if err := syscall.Mkfifo(target, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Base(target), p); err != nil {
			t.Fatal(err)
		}
		return unblockFIFO(target)
	case "directory":
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	case "device":
		// /dev/zero: endless zeros.
		if err := syscall.Mknod(p, syscall.S_IFCHR|0o644, 1<<8|5); err != nil {
			t.Skipf("mknod (needs root): %v", err)
		}
	case "socket":
		// Bound where the path is short enough for a socket, then moved.
		short, err := os.MkdirTemp("", "sock")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(short) })
		ln, err := net.Listen("unix", filepath.Join(short, "s"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		if err := os.Rename(filepath.Join(short, "s"), p); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("kind %q", kind)
	}
	return func() {}
}

// TestFileCacheRefusesSpecialFiles: a FIFO, device, socket or directory
// where a file:// cache has nix-cache-info, a narinfo, a NAR or a closure
// index fails at once with an error naming the file and the cache (opening
// a FIFO used to block in the kernel, past every timeout). A symlink is
// followed, as Nix does, but to a regular file only.
func TestFileCacheRefusesSpecialFiles(t *testing.T) {
	f, base := uploadedCache(t)
	ni0, err := func() (*NarInfo, error) {
		c, err := Open(ctxT(t), "file://"+base, fastOpts(f.PublicKey))
		if err != nil {
			return nil, err
		}
		return c.NarInfo(ctxT(t), f.App)
	}()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"nix-cache-info": "nix-cache-info",
		"narinfo":        HashPart(f.App) + ".narinfo",
		"NAR":            ni0.URL,
		"closure index":  ClosureIndexName(f.App),
	}
	for _, what := range []string{"nix-cache-info", "narinfo", "NAR", "closure index"} {
		for _, kind := range []string{"fifo", "symlink to a fifo", "directory", "device", "socket"} {
			t.Run(what+"/"+kind, func(t *testing.T) {
				dir := copyDir(t, base)
				file := filepath.Join(dir, filepath.FromSlash(files[what]))
				unblock := makeSpecial(t, file, kind)
				url := "file://" + dir
				ctx, cancel := context.WithTimeout(ctxT(t), 30*time.Second)
				defer cancel()
				_, err := promptly(t, what, unblock, func() (struct{}, error) {
					c, err := Open(ctx, url, fastOpts(f.PublicKey))
					if err != nil {
						return struct{}{}, err
					}
					switch what {
					case "narinfo":
						_, err = c.NarInfo(ctx, f.App)
					case "NAR":
						_, err = c.Download(ctx, ni0, io.Discard)
					case "closure index":
						_, err = c.ClosureIndex(ctx, f.App)
					}
					return struct{}{}, err
				})
				if !errors.Is(err, ErrBadContent) {
					t.Fatalf("%v, want %v", err, ErrBadContent)
				}
				if errors.Is(err, ErrUnsupported) || IsTransient(err) {
					t.Errorf("%v: unsupported %v, transient %v", err, errors.Is(err, ErrUnsupported), IsTransient(err))
				}
				if msg := err.Error(); !strings.Contains(msg, file) || !strings.Contains(msg, url) {
					t.Errorf("the error does not name the file %s and the cache %s: %v", file, url, err)
				}
			})
		}
	}

	// A symlink to a regular file inside the cache is a cache file.
	dir := copyDir(t, base)
	name := HashPart(f.App) + ".narinfo"
	if err := os.Rename(filepath.Join(dir, name), filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("moved", filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	c, err := Open(ctxT(t), "file://"+dir, fastOpts(f.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.NarInfo(ctxT(t), f.App); err != nil {
		t.Errorf("a narinfo behind a symlink: %v", err)
	}
}

// endlessServer serves the files of dir, except that the names in endless
// get an endless body (each repeating line, generated as it is sent, never
// stored) and those in announced a Content-Length of 1 GiB before such a
// body. It counts the bytes of those bodies it sent; a body ends when the
// client leaves, or after 1 GiB at the most.
type endlessServer struct {
	URL  string
	sent atomic.Int64
	reqs atomic.Int64
}

func newEndlessServer(t *testing.T, dir string, body func(name string) func(w io.Writer) error, announce bool) *endlessServer {
	t.Helper()
	s := &endlessServer{}
	files := http.FileServer(http.Dir(dir))
	s.URL = testnode.ServeHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/")
		gen := body(name)
		if gen == nil {
			files.ServeHTTP(w, r)
			return
		}
		s.reqs.Add(1)
		if announce {
			w.Header().Set("Content-Length", fmt.Sprint(1<<30))
		}
		w.WriteHeader(http.StatusOK)
		cw := &countingWriter{w: w, n: &s.sent}
		for s.sent.Load() < 1<<30 && r.Context().Err() == nil {
			if err := gen(cw); err != nil {
				return
			}
		}
	}))
	return s
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c *countingWriter) Flush() {
	if f, ok := c.w.(http.Flusher); ok {
		f.Flush()
	}
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// repeat returns a body generator writing line again and again.
func repeat(line string) func(io.Writer) error {
	chunk := []byte(strings.Repeat(line, (64<<10)/len(line)))
	return func(w io.Writer) error {
		_, err := w.Write(chunk)
		return err
	}
}

// TestEndlessCacheInfo: a reachable cache whose nix-cache-info never ends
// (or announces 1 GiB) fails to open after a bounded read, once (no
// retries), with an error that names the cache and says it sent bad
// content, and that is not ErrUnsupported (which would let a caller hand
// the cache to the daemon, which reads it all). Same for a narinfo.
func TestEndlessCacheInfo(t *testing.T) {
	f, dir := uploadedCache(t)
	for _, announce := range []bool{false, true} {
		t.Run(fmt.Sprintf("content-length=%v", announce), func(t *testing.T) {
			srv := newEndlessServer(t, dir, func(name string) func(io.Writer) error {
				if name == "nix-cache-info" {
					return repeat("StoreDir: /nix/store\n")
				}
				return nil
			}, announce)
			_, err := Open(ctxT(t), srv.URL, fastOpts(f.PublicKey))
			if !errors.Is(err, ErrBadContent) || !strings.Contains(err.Error(), srv.URL) || !strings.Contains(err.Error(), "nix-cache-info") {
				t.Errorf("Open: %v, want %v naming %s and nix-cache-info", err, ErrBadContent, srv.URL)
			}
			if errors.Is(err, ErrUnsupported) || IsTransient(err) {
				t.Errorf("Open: %v is unsupported (%v) or transient (%v)", err, errors.Is(err, ErrUnsupported), IsTransient(err))
			}
			if n := srv.reqs.Load(); n != 1 {
				t.Errorf("nix-cache-info asked for %d times, want 1", n)
			}
			// What the kernel buffers of a socket comes on top of what
			// was read; far below the 1 GiB on offer all the same.
			if sent := srv.sent.Load(); sent > 32<<20 {
				t.Errorf("the client took %d bytes of the endless nix-cache-info", sent)
			}

			// An endless narinfo: the cache has it, but it is bad.
			srv = newEndlessServer(t, dir, func(name string) func(io.Writer) error {
				if strings.HasSuffix(name, ".narinfo") {
					return repeat("References: " + strings.TrimPrefix(f.Lib, StoreDir+"/") + "\n")
				}
				return nil
			}, announce)
			c, err := Open(ctxT(t), srv.URL, fastOpts(f.PublicKey))
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = Caches{c}.Lookup(ctxT(t), f.App)
			if !errors.Is(err, ErrBadContent) || !strings.Contains(err.Error(), srv.URL) {
				t.Errorf("Lookup: %v, want %v naming %s", err, ErrBadContent, srv.URL)
			}
			if sent := srv.sent.Load(); sent > 32<<20 {
				t.Errorf("the client took %d bytes of the endless narinfo", sent)
			}
		})
	}
}

// TestOpenErrorsOfReachableCaches: whatever a reachable cache answers, a
// failed Open is never ErrUnsupported (that is for store types this
// package cannot speak, such as s3://).
func TestOpenErrorsOfReachableCaches(t *testing.T) {
	f, dir := uploadedCache(t)
	cases := map[string]func(w http.ResponseWriter){
		"404":          func(w http.ResponseWriter) { http.NotFound(w, nil) },
		"500":          func(w http.ResponseWriter) { w.WriteHeader(http.StatusInternalServerError) },
		"501":          func(w http.ResponseWriter) { w.WriteHeader(http.StatusNotImplemented) },
		"403":          func(w http.ResponseWriter) { w.WriteHeader(http.StatusForbidden) },
		"other store":  func(w http.ResponseWriter) { io.WriteString(w, "StoreDir: /gnu/store\n") },
		"bad priority": func(w http.ResponseWriter) { io.WriteString(w, "Priority: high\n") },
		"too large":    func(w http.ResponseWriter) { io.WriteString(w, strings.Repeat("x", maxCacheInfoSize+1)) },
		"binary":       func(w http.ResponseWriter) { w.Write([]byte{0, 1, 2, 0xff, '\n'}) },
	}
	for name, answer := range cases {
		t.Run(name, func(t *testing.T) {
			srv := newServer(t, dir)
			srv.setFault(func(w http.ResponseWriter, r *http.Request, n int) bool {
				if r.URL.Path != "/nix-cache-info" {
					return false
				}
				answer(w)
				return true
			})
			opts := fastOpts(f.PublicKey)
			opts.Attempts = 1
			_, err := Open(ctxT(t), srv.URL, opts)
			if errors.Is(err, ErrUnsupported) {
				t.Errorf("Open: %v is ErrUnsupported", err)
			}
		})
	}
	if _, err := Open(ctxT(t), "s3://bucket", fastOpts()); !errors.Is(err, ErrUnsupported) {
		t.Errorf("s3://: %v, want %v", err, ErrUnsupported)
	}
}

// hostileIndex writes a closure index for root that never closes: the
// root's real record, then distinct records signed by k (a cache that
// replays narinfos signed by a trusted key is the worst case: every record
// passes its checks), each referring to the next, so that no check can
// fail before the reader gives up. n numbers the records written so far.
func hostileIndex(k SecretKey, rootRecord string, root string) func(io.Writer) error {
	n := 0
	header := true
	return func(w io.Writer) error {
		var b strings.Builder
		if header {
			header = false
			fmt.Fprintf(&b, "%s: %d\nRoot: %s\nCount: %d\n\n%s\n", ClosureIndexMagic, ClosureIndexVersion, root, MaxClosureIndexPaths, rootRecord)
		}
		for range 16 {
			n++
			sum := sha256.Sum256([]byte(strconv.Itoa(n)))
			ni := &NarInfo{
				StorePath: fmt.Sprintf("%s/%s-hostile-%d", StoreDir, fakeHash(n), n),
				URL:       "nar/" + fakeHash(n) + ".nar", Compression: "none",
				NarHash: "sha256:" + nix32(sum[:]), NarSize: 1,
			}
			for j := range 48 {
				ni.References = append(ni.References, fmt.Sprintf("%s-hostile-%d", fakeHash(n+1+j), n+1+j))
			}
			if err := Sign(ni, k); err != nil {
				return err
			}
			b.WriteString(ni.String())
			b.WriteString("\n")
		}
		_, err := io.WriteString(w, b.String())
		return err
	}
}

// fakeHash is a valid 32-character nix32 hash part made from i.
func fakeHash(i int) string {
	const digits = "0123456789abcdfghijklmnpqrsvwxyz"
	var b [32]byte
	for j := range b {
		b[j] = digits[(i>>(5*(j%6)))&31^j]
	}
	return string(b[:])
}

// countingReader counts what was read of r.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestReadClosureIndexStreamsBounded: an index that never closes, made of
// records that each pass their checks, is refused after at most
// MaxClosureIndexSize bytes and ClosureIndexMemory of records, read as a
// stream; it is not read whole first.
func TestReadClosureIndexStreamsBounded(t *testing.T) {
	k := genKey(t, "hostile-1")
	infos := syntheticClosure(t, k, 2)
	root := infos[0].StorePath
	pr, pw := io.Pipe()
	gen := hostileIndex(k, infos[0].String(), root)
	go func() {
		for {
			if err := gen(pw); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
	}()
	defer pr.Close()
	cr := &countingReader{r: pr}
	_, err := ReadClosureIndex(cr, root, []PublicKey{k.PublicKey()})
	if !errors.Is(err, ErrBadClosureIndex) || !strings.Contains(err.Error(), "memory") {
		t.Errorf("ReadClosureIndex: %v, want %v about memory", err, ErrBadClosureIndex)
	}
	if cr.n > ClosureIndexMemory+64<<10 {
		t.Errorf("read %d bytes of a hostile index, more than the %d of memory an index may take", cr.n, ClosureIndexMemory)
	}
}

// TestHostileClosureIndex: a cache serving a 1 GiB closure index (an
// endless stream over HTTP, with or without a Content-Length; a sparse
// file in a file:// cache) costs a bounded read; the plan ignores the
// index, with a note, and plans by narinfos.
func TestHostileClosureIndex(t *testing.T) {
	f, dir := uploadedCache(t)
	rootRecord, err := os.ReadFile(narinfoFile(dir, f.App))
	if err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, url string, sent func() int64) {
		t.Helper()
		var notes syncLog
		opts := fastOpts(f.PublicKey)
		opts.Logf = notes.logf
		opts.ClosureIndexes = []string{f.App}
		c, err := Open(ctxT(t), url, opts)
		if err != nil {
			t.Fatal(err)
		}
		plan, err := Caches{c}.Plan(ctxT(t), []string{f.App}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.IndexedRoots) != 0 {
			t.Errorf("planned from the hostile index: %q", plan.IndexedRoots)
		}
		if got, want := sorted(planPaths(plan)), closureSet(t, f.App); !slices.Equal(got, want) {
			t.Errorf("planned %q\nwant %q", got, want)
		}
		if !strings.Contains(notes.String(), "ignoring the closure index") {
			t.Errorf("no note about the ignored index:\n%s", notes.String())
		}
		if sent != nil {
			if n := sent(); n > 32<<20 {
				t.Errorf("the client took %d bytes of the hostile index", n)
			}
		}
	}
	for _, announce := range []bool{false, true} {
		t.Run(fmt.Sprintf("http/content-length=%v", announce), func(t *testing.T) {
			srv := newEndlessServer(t, dir, func(name string) func(io.Writer) error {
				if name == ClosureIndexName(f.App) {
					return hostileIndex(f.SecretKey, string(rootRecord), f.App)
				}
				return nil
			}, announce)
			check(t, srv.URL, srv.sent.Load)
		})
	}
	t.Run("file", func(t *testing.T) {
		d := copyDir(t, dir)
		p := filepath.Join(d, ClosureIndexName(f.App))
		fh, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		gen := hostileIndex(f.SecretKey, string(rootRecord), f.App)
		for range 4 {
			if err := gen(fh); err != nil {
				t.Fatal(err)
			}
		}
		if err := fh.Truncate(1 << 30); err != nil {
			t.Fatal(err)
		}
		fh.Close()
		check(t, "file://"+d, nil)
	})
}

// syncLog collects notes from concurrent goroutines.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.b, format+"\n", args...)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestPrefetchedIndexReleased: a prefetched closure index waits unread,
// holding a connection, until the plan reads it; a plan that does not
// need it (the root is valid) closes it, so the connection serves the
// downloads. With two connections, two NARs can then stream at once.
func TestPrefetchedIndexReleased(t *testing.T) {
	f, dir := uploadedCache(t)
	srv := newServer(t, dir)
	opts := fastOpts(f.PublicKey)
	opts.MaxConnections = 2
	opts.ClosureIndexes = []string{f.App, f.Other}
	c, err := Open(ctxT(t), srv.URL, opts)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Caches{c}.Plan(ctxT(t), []string{f.App}, func(p []string) ([]string, error) { return p, nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Paths) != 0 {
		t.Fatalf("planned %d paths of a valid root", len(plan.Paths))
	}
	var nars []*NarInfo
	for _, p := range []string{f.App, f.Lib} {
		ni, err := c.NarInfo(ctxT(t), p)
		if err != nil {
			t.Fatal(err)
		}
		nars = append(nars, ni)
	}
	_, err = promptly(t, "two NARs at once", func() {}, func() (struct{}, error) {
		for _, ni := range nars {
			rc, err := c.OpenNar(ctxT(t), ni)
			if err != nil {
				return struct{}{}, err
			}
			defer rc.Close()
		}
		return struct{}{}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestHugeHeaders: a cache answering with megabytes of headers fails to
// open (the HTTP client read up to 10 MiB of headers per response).
func TestHugeHeaders(t *testing.T) {
	f, dir := uploadedCache(t)
	srv := newServer(t, dir)
	srv.setFault(func(w http.ResponseWriter, r *http.Request, n int) bool {
		for i := range 4096 {
			w.Header().Set(fmt.Sprintf("X-Junk-%d", i), strings.Repeat("j", 1000))
		}
		return false
	})
	opts := fastOpts(f.PublicKey)
	opts.HTTPClient = NewHTTPClient(0)
	opts.Attempts = 1
	if _, err := Open(ctxT(t), srv.URL, opts); err == nil || errors.Is(err, ErrUnsupported) {
		t.Errorf("Open of a cache sending 4 MiB of headers: %v", err)
	}
	// The same client still opens a cache with ordinary headers.
	srv.setFault(nil)
	if _, err := Open(ctxT(t), srv.URL, opts); err != nil {
		t.Errorf("Open: %v", err)
	}
}

// TestDrippingClosureIndex: a cache that sends its closure index a few
// bytes at a time, never stalling long enough for the stall timeout, is
// ignored once the stall timeout has passed for the whole index (while an
// index is read no other is, and it is only an optimisation), and the
// plan goes on by narinfos.
func TestDrippingClosureIndex(t *testing.T) {
	f, dir := uploadedCache(t)
	rootRecord, err := os.ReadFile(narinfoFile(dir, f.App))
	if err != nil {
		t.Fatal(err)
	}
	srv := newEndlessServer(t, dir, func(name string) func(io.Writer) error {
		if name != ClosureIndexName(f.App) {
			return nil
		}
		header := fmt.Sprintf("%s: %d\nRoot: %s\nCount: 2\n\n%s\n", ClosureIndexMagic, ClosureIndexVersion, f.App, rootRecord)
		sent := 0
		return func(w io.Writer) error {
			if sent < len(header) {
				sent++
				_, err := io.WriteString(w, header[sent-1:sent])
				w.(http.Flusher).Flush()
				time.Sleep(50 * time.Millisecond)
				return err
			}
			time.Sleep(50 * time.Millisecond)
			_, err := io.WriteString(w, "x")
			w.(http.Flusher).Flush()
			return err
		}
	}, false)
	var notes syncLog
	opts := fastOpts(f.PublicKey)
	opts.StallTimeout = time.Second
	opts.Logf = notes.logf
	c, err := Open(ctxT(t), srv.URL, opts)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := promptly(t, "plan", func() {}, func() (*Plan, error) { return Caches{c}.Plan(ctxT(t), []string{f.App}, nil) })
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.IndexedRoots) != 0 {
		t.Errorf("planned from the dripping index")
	}
	if got, want := sorted(planPaths(plan)), closureSet(t, f.App); !slices.Equal(got, want) {
		t.Errorf("planned %q\nwant %q", got, want)
	}
	if !strings.Contains(notes.String(), "not read within 1s") {
		t.Errorf("the note does not say the index took too long:\n%s", notes.String())
	}
}
