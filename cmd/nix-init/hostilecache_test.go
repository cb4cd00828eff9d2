package main

// nix-init against hostile and broken caches: closure indexes of 1 GiB
// (over HTTP, generated as they are sent; in a file:// cache, a sparse
// file) must not take it past its 32 MiB, and a FIFO in a file:// cache
// must not block it.

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/binarycache"
)

// hostileRSSLimit is nix-init's memory budget.
const hostileRSSLimit = 32 << 10 // KiB

// hostileRig is a rig whose closure's every path is a root (depth 4 of
// width 3: 13 roots), with a cache that serves the fixture's files but a
// closure index of 1 GiB for each root.
type hostileRig struct {
	*rig
	roots []string
	key   binarycache.SecretKey
}

func newHostileRig(t *testing.T, name string) *hostileRig {
	t.Helper()
	r := newRig(t, name, rigOptions{nodeSubstituters: true, depth: 4, width: 3, bytes: 1024})
	// A leaf first: a run with it alone leaves the other roots missing.
	h := &hostileRig{rig: r}
	for _, level := range r.fx.Levels {
		h.roots = append(h.roots, level...)
	}
	h.roots = append(h.roots, r.fx.Root)
	k, err := binarycache.LoadSecretKey(r.cache.SecretKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	h.key = k
	return h
}

// rootArgs names the first n roots as nix-init arguments.
func (h *hostileRig) rootArgs(n int) []string {
	var args []string
	for i, p := range h.roots[:n] {
		args = append(args, fmt.Sprintf("r%d=%s", i, p))
	}
	return args
}

// index writes the hostile index of root to w, until w fails or 1 GiB
// was written: a valid header, the root's real record, then distinct
// records signed by the cache's own key (as a cache replaying signed
// narinfos would: each passes its checks) that never close the closure.
func (h *hostileRig) index(t *testing.T, w io.Writer, root string) {
	rec, err := os.ReadFile(h.cache.NarinfoFile(root))
	if err != nil {
		t.Error(err)
		return
	}
	bw := &countWriter{w: w}
	fmt.Fprintf(bw, "%s: %d\nRoot: %s\nCount: %d\n\n%s\n", binarycache.ClosureIndexMagic, binarycache.ClosureIndexVersion, root, binarycache.MaxClosureIndexPaths, rec)
	fake := func(i int) string {
		sum := sha256.Sum256([]byte(root + strconv.Itoa(i)))
		return fmt.Sprintf("%s-hostile-%d", nix32Hash(sum[:20]), i)
	}
	for i := 0; bw.n < 1<<30 && bw.err == nil; i++ {
		sum := sha256.Sum256([]byte(strconv.Itoa(i)))
		ni := &binarycache.NarInfo{
			StorePath: binarycache.StoreDir + "/" + fake(i), URL: fmt.Sprintf("nar/hostile-%d.nar", i),
			Compression: "none", NarHash: "sha256:" + nix32Hash(sum[:]), NarSize: 1,
		}
		for j := 1; j <= 48; j++ {
			ni.References = append(ni.References, fake(i+j))
		}
		if err := binarycache.Sign(ni, h.key); err != nil {
			t.Error(err)
			return
		}
		fmt.Fprintf(bw, "%s\n", ni.String())
	}
}

// nix32Hash is Nix's base-32 of b.
func nix32Hash(b []byte) string {
	const digits = "0123456789abcdfghijklmnpqrsvwxyz"
	n := (len(b)*8-1)/5 + 1
	out := make([]byte, n)
	for i := n - 1; i >= 0; i-- {
		bit := i * 5
		j, k := bit/8, bit%8
		c := int(b[j]) >> k
		if j+1 < len(b) {
			c |= int(b[j+1]) << (8 - k)
		}
		out[n-1-i] = digits[c&31]
	}
	return string(out)
}

type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}

// serve serves the cache's files over HTTP on 127.0.0.1, and for each
// root's closure index the endless hostile one. A body ends when the
// client leaves (or at 1 GiB).
func (h *hostileRig) serve(t *testing.T) (url string, indexBytes *atomic.Int64) {
	t.Helper()
	byName := map[string]string{}
	for _, p := range h.roots {
		byName["/"+binarycache.ClosureIndexName(p)] = p
	}
	indexBytes = &atomic.Int64{}
	files := http.FileServer(http.Dir(h.cache.Dir))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		root, ok := byName[r.URL.Path]
		if !ok {
			files.ServeHTTP(w, r)
			return
		}
		cw := &countWriter{w: w}
		h.index(t, cw, root)
		indexBytes.Add(cw.n)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		wg.Wait()
	})
	return "http://" + ln.Addr().String(), indexBytes
}

// fileCache copies the cache's files into a new directory nobody can read
// (a file:// cache) and returns it.
func (h *hostileRig) fileCache(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "hostile-cache-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if out, err := exec.Command("cp", "-a", h.cache.Dir+"/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	if out, err := exec.Command("chmod", "-R", "a+rX", dir).CombinedOutput(); err != nil {
		t.Fatalf("chmod: %v %s", err, out)
	}
	return dir
}

// checkIgnoredIndex: the run succeeded by planning with narinfos, said it
// ignored the index, and stayed within the memory budget.
func (h *hostileRig) checkIgnoredIndex(t *testing.T, res result, n int) {
	t.Helper()
	wantCode(t, res, exitOK)
	if !strings.Contains(res.stderr, "ignoring the closure index") {
		t.Errorf("nix-init did not say it ignored the closure index")
	}
	rep := h.readReport(t, "report.json")
	if rep.PeakRSSKiB <= 0 || rep.PeakRSSKiB >= hostileRSSLimit {
		t.Errorf("peak RSS %d KiB with %d hostile indexes, want under %d KiB", rep.PeakRSSKiB, n, hostileRSSLimit)
	}
	t.Logf("peak RSS %d KiB with %d hostile indexes", rep.PeakRSSKiB, n)
	if bad := h.node.Invalid(t, h.roots[:n]...); len(bad) > 0 {
		t.Errorf("not valid after nix-init: %v", bad)
	}
}

// TestHostileClosureIndexHTTP: a cache that needs no key of its own sends
// a 1 GiB closure index for one root, then for the 12 roots still
// missing of a run: nix-init reads a bounded part of each (one at a time), ignores them
// with a note, plans by narinfos, and stays under 32 MiB. (It read each
// index whole first, up to 64 MiB, all roots at once.)
func TestHostileClosureIndexHTTP(t *testing.T) {
	h := newHostileRig(t, "hostile-index-http")
	url, sent := h.serve(t)
	flags := []string{"--via", "direct", "--substituter", url, "--trusted-public-key", h.cache.PublicKey, "--report", "report.json"}
	for _, n := range []int{1, len(h.roots)} {
		t.Run(fmt.Sprintf("roots=%d", n), func(t *testing.T) {
			res := runInit(t, h.cmd(append(flags, h.rootArgs(n)...)...), 60*time.Second)
			h.checkIgnoredIndex(t, res, n)
			t.Logf("index bytes sent: %d", sent.Load())
		})
	}
}

// TestHostileClosureIndexFile: the same from a file:// cache whose index
// is a sparse file of 1 GiB (a valid beginning, then zeros): refused by
// its size before a byte is read.
func TestHostileClosureIndexFile(t *testing.T) {
	h := newHostileRig(t, "hostile-index-file")
	dir := h.fileCache(t)
	for _, root := range h.roots {
		fh, err := os.Create(filepath.Join(dir, binarycache.ClosureIndexName(root)))
		if err != nil {
			t.Fatal(err)
		}
		h.index(t, &limitWriter{w: fh, left: 1 << 20}, root)
		if err := fh.Truncate(1 << 30); err != nil {
			t.Fatal(err)
		}
		fh.Chmod(0o644)
		fh.Close()
	}
	res := runInit(t, h.cmd(append([]string{"--via", "direct", "--substituter", "file://" + dir,
		"--trusted-public-key", h.cache.PublicKey, "--report", "report.json"}, h.rootArgs(len(h.roots))...)...), 60*time.Second)
	h.checkIgnoredIndex(t, res, len(h.roots))
}

// limitWriter fails after left bytes.
type limitWriter struct {
	w    io.Writer
	left int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if len(p) > l.left {
		p = p[:l.left]
	}
	n, err := l.w.Write(p)
	l.left -= n
	if err == nil && l.left == 0 {
		err = io.ErrShortWrite
	}
	return n, err
}

// TestFIFOInFileCache: a FIFO as nix-cache-info, a narinfo, a NAR or a
// closure index of a file:// cache: nix-init ends at once (it blocked in
// open(), past its --timeout of 5s and past SIGTERM), with a message
// naming the file; a FIFO as closure index only costs the index.
func TestFIFOInFileCache(t *testing.T) {
	r := newRig(t, "fifo-file-cache", rigOptions{nodeSubstituters: true})
	h := &hostileRig{rig: r}
	base := h.fileCache(t)
	ni, err := os.ReadFile(r.cache.NarinfoFile(r.fx.Root))
	if err != nil {
		t.Fatal(err)
	}
	var narURL string
	for _, l := range strings.Split(string(ni), "\n") {
		if u, ok := strings.CutPrefix(l, "URL: "); ok {
			narURL = u
		}
	}
	files := map[string]string{
		"nix-cache-info": "nix-cache-info",
		"narinfo":        binarycache.HashPart(r.fx.Root) + ".narinfo",
		"NAR":            narURL,
		"closure index":  binarycache.ClosureIndexName(r.fx.Root),
	}
	for _, what := range []string{"nix-cache-info", "narinfo", "NAR", "closure index"} {
		t.Run(strings.ReplaceAll(what, " ", "-"), func(t *testing.T) {
			dir := base + "-" + strings.ReplaceAll(what, " ", "-")
			if out, err := exec.Command("cp", "-a", base, dir).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v %s", err, out)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			fifo := filepath.Join(dir, filepath.FromSlash(files[what]))
			os.Remove(fifo)
			if err := syscall.Mkfifo(fifo, 0o644); err != nil {
				t.Fatal(err)
			}
			os.Chmod(fifo, 0o644)
			// Whatever happens, the FIFO gets a writer at the end, so that
			// a blocked run can end and be reaped.
			t.Cleanup(func() {
				if fd, err := syscall.Open(fifo, syscall.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					syscall.Close(fd)
				}
			})
			p := start(t, r.cmd("--via", "direct", "--timeout", "5s", "--substituter", "file://"+dir,
				"--trusted-public-key", r.cache.PublicKey, "app="+r.fx.Root))
			res := p.wait(t, 15*time.Second)
			if what == "closure index" {
				wantCode(t, res, exitOK)
				if !strings.Contains(res.stderr, "ignoring the closure index") {
					t.Errorf("no note about the ignored index")
				}
			}
			if !strings.Contains(res.stderr, fifo) || !strings.Contains(res.stderr, "named pipe") {
				t.Errorf("the message does not name %s as a named pipe", fifo)
			}
		})
	}
}
