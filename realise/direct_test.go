package realise

// Tests of Direct against real Nix 2.8: hermetic nodes (a chroot store with
// its own nix-daemon, or a child nix-daemon --stdio for single-user mode)
// and binary caches made by `nix copy`, served on 127.0.0.1 with fault
// injection (internal/testnode). The engine runs in-process, as root.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/nix-aurora/nix-aurora/binarycache"
	"github.com/nix-aurora/nix-aurora/internal/testnix"
	"github.com/nix-aurora/nix-aurora/internal/testnode"
	"github.com/nix-aurora/nix-aurora/nar"
	"github.com/nix-aurora/nix-aurora/store"
)

// logLines collects a run's log, safely from any goroutine.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logLines) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}

func (l *logLines) has(sub string) bool {
	for _, line := range l.all() {
		if strings.Contains(line, sub) {
			return true
		}
	}
	return false
}

func (l *logLines) String() string { return strings.Join(l.all(), "\n") }

// directWorld is one scenario: a node (daemon or single-user), the caches,
// a sandbox for the root links, and how to connect.
type directWorld struct {
	node     *testnode.Node
	gcDir    string
	connect  func(context.Context) (*store.Conn, error)
	connects atomic.Int32
	log      logLines
}

// newDaemonWorld makes a node trusting keys, with its daemon started, and
// a root (trusted) client of that daemon.
func newDaemonWorld(t *testing.T, opts testnode.NodeOptions) *directWorld {
	t.Helper()
	testnix.RequireRoot(t)
	w := &directWorld{node: testnode.NewNode(t, opts)}
	w.node.StartDaemon(t)
	w.gcDir = filepath.Join(testnode.NewSandbox(t, w.node).Dir, ".gc")
	w.connect = func(ctx context.Context) (*store.Conn, error) {
		w.connects.Add(1)
		c, err := store.Dial(ctx, w.node.Socket)
		if err != nil {
			return nil, err
		}
		return configure(ctx, c)
	}
	return w
}

// newSingleUserWorld makes a node served by a child nix-daemon --stdio per
// connection: single-user Nix, where nix-init is the only gate.
func newSingleUserWorld(t *testing.T, opts testnode.NodeOptions) *directWorld {
	t.Helper()
	testnix.RequireRoot(t)
	w := &directWorld{node: testnode.NewNode(t, opts)}
	w.gcDir = filepath.Join(testnode.NewSandbox(t, w.node).Dir, ".gc")
	w.connect = func(ctx context.Context) (*store.Conn, error) {
		w.connects.Add(1)
		c, err := store.Spawn(ctx, store.StdioOptions{Store: w.node.Root, Env: w.node.Env()})
		if err != nil {
			return nil, err
		}
		return configure(ctx, c)
	}
	return w
}

func configure(ctx context.Context, c *store.Conn) (*store.Conn, error) {
	o := store.DefaultOptions()
	o.Verbosity = store.LvlWarn
	o.Overrides = map[string]string{"narinfo-cache-negative-ttl": "0"}
	if err := c.SetOptions(ctx, o); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// realise runs the engine with sub; the budget is short and the retries
// fast, so that every case ends within seconds.
func (w *directWorld) realise(t *testing.T, sub Substituter, budget time.Duration, roots ...Root) (*Report, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), budget+30*time.Second)
	defer cancel()
	cfg := Config{
		Connect:     w.connect,
		Substituter: sub,
		GCRootDir:   w.gcDir,
		Timeout:     budget,
		Log:         w.log.logf,
		NewBackOff:  fastBackOff,
	}
	rep, err := Realise(ctx, cfg, roots)
	t.Logf("log:\n%s\nerror: %v", &w.log, err)
	return rep, err
}

// cacheOptions are quick retries trusting keys.
func cacheOptions(t *testing.T, keys ...string) binarycache.Options {
	t.Helper()
	pks, err := binarycache.ParsePublicKeys(strings.Join(keys, " "))
	if err != nil {
		t.Fatal(err)
	}
	return binarycache.Options{TrustedKeys: pks, RetryDelay: 20 * time.Millisecond, Attempts: 6, StallTimeout: 5 * time.Second}
}

// hostQuery runs nix-store --query on the host store.
func hostQuery(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("nix-store", append([]string{"--query"}, args...)...).Output()
	if err != nil {
		t.Fatalf("nix-store --query %v: %v", args, err)
	}
	return strings.Fields(string(out))
}

// checkStore checks the node after a run: its store verifies, and it holds
// no path but ones of the allowed closures, each with the NAR hash it has
// in the host store (where the fixtures were built).
func checkStore(t *testing.T, node *testnode.Node, allowed ...[]string) {
	t.Helper()
	node.Verify(t)
	ok := map[string]bool{}
	for _, c := range allowed {
		for _, p := range c {
			ok[p] = true
		}
	}
	valid := node.ValidPaths(t)
	for _, p := range valid {
		if !ok[p] {
			t.Errorf("the node holds %s, which no fixture has", p)
		}
	}
	if len(valid) == 0 {
		return
	}
	got := strings.Fields(node.NixStore(t, append([]string{"--query", "--hash"}, valid...)...))
	want := hostQuery(t, append([]string{"--hash"}, valid...)...)
	if !slices.Equal(got, want) {
		t.Errorf("NAR hashes in the node %v, in the host store %v (paths %v)", got, want, valid)
	}
}

// fetchedOrder returns the paths of the "fetched" log lines, in order.
func fetchedOrder(lines []string) []string {
	var out []string
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, "fetched "); ok {
			out = append(out, strings.Fields(rest)[0])
		}
	}
	return out
}

// checkReferencesFirst checks that each fetched path came after its
// references that were fetched too.
func checkReferencesFirst(t *testing.T, order []string) {
	t.Helper()
	pos := map[string]int{}
	for i, p := range order {
		pos[p] = i
	}
	for i, p := range order {
		for _, ref := range hostQuery(t, "--references", p) {
			if j, ok := pos[ref]; ok && ref != p && j > i {
				t.Errorf("%s was imported before its reference %s", p, ref)
			}
		}
	}
}

// checkEmpty checks that no temporary NAR was left behind.
func checkEmpty(t *testing.T, dir string) {
	t.Helper()
	if left, _ := os.ReadDir(dir); len(left) > 0 {
		t.Errorf("left in the temporary directory: %v", left)
	}
}

func hashPartOf(p string) string { return strings.TrimPrefix(p, "/nix/store/")[:32] }

func TestDirectDaemonMode(t *testing.T) {
	t.Parallel()
	fx := testnode.Chain(t, "direct-daemon", 3, 2, 8192)
	cache := testnode.NewCache(t, testnode.CacheOptions{}, fx.Root)
	w := newDaemonWorld(t, testnode.NodeOptions{TrustedPublicKeys: []string{cache.PublicKey}})
	tmp := t.TempDir()
	d := &Direct{URLs: []string{cache.URL}, Options: cacheOptions(t, cache.PublicKey), Jobs: 4, TempDir: tmp}
	// Two roots whose closures overlap: the middle root's closure is
	// part of the other's.
	mid := fx.Levels[1][1]
	rep, err := w.realise(t, d, 30*time.Second, Root{Name: "app", Path: fx.Root}, Root{Name: "mid", Path: mid})
	if err != nil {
		t.Fatal(err)
	}
	if bad := w.node.Invalid(t, fx.Closure...); len(bad) > 0 {
		t.Fatalf("not valid after the run: %v", bad)
	}
	for _, r := range rep.Roots {
		if target, err := os.Readlink(r.Link); err != nil || target != r.Path {
			t.Errorf("root %s: link %s -> %q (%v)", r.Name, r.Link, target, err)
		}
	}
	// Each narinfo and each NAR once; one nix-cache-info; a closure index
	// asked for each root (nix copy writes none).
	reqs := cache.Requests()
	for _, p := range fx.Closure {
		if n := cache.Count("/" + hashPartOf(p) + ".narinfo"); n != 1 {
			t.Errorf("narinfo of %s requested %d times", p, n)
		}
	}
	if n := cache.Count("/nar/"); n != len(fx.Closure) {
		t.Errorf("%d NAR requests for %d paths: %q", n, len(fx.Closure), reqs)
	}
	if n := cache.Count("/nix-cache-info"); n != 1 {
		t.Errorf("nix-cache-info requested %d times", n)
	}
	if n := cache.Count(binarycache.ClosureIndexSuffix); n != 2 {
		t.Errorf("%d closure index requests, want one per root", n)
	}
	if len(rep.Substituted) != len(fx.Closure) || rep.Retries != 0 {
		t.Errorf("report: %d substituted, %d retries", len(rep.Substituted), rep.Retries)
	}
	for _, s := range rep.Substituted {
		if s.From != cache.URL || s.Bytes == 0 {
			t.Errorf("report of %s: %+v", s.Path, s)
		}
	}
	order := fetchedOrder(w.log.all())
	if len(order) != len(fx.Closure) || !w.log.has("fetched "+fx.Root+" from "+cache.URL+" (") {
		t.Errorf("fetched lines for %v", order)
	}
	checkReferencesFirst(t, order)
	checkStore(t, w.node, fx.Closure)
	checkEmpty(t, tmp)

	// The store kept the cache's signatures (the daemon checked them).
	conn, err := w.connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	info, err := conn.QueryPathInfo(context.Background(), fx.Root)
	conn.Close()
	if err != nil || len(info.Sigs) != 1 || !strings.HasPrefix(info.Sigs[0], cache.KeyName+":") || info.Ultimate {
		t.Errorf("path info of the root: %+v, %v", info, err)
	}

	// Everything valid: not a single request to the cache.
	if err := cache.Reset(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.realise(t, d, 30*time.Second, Root{Name: "app", Path: fx.Root}); err != nil {
		t.Fatal(err)
	}
	if reqs := cache.Requests(); len(reqs) != 0 {
		t.Errorf("requests with everything valid: %q", reqs)
	}
}

func TestDirectSingleUser(t *testing.T) {
	t.Parallel()
	fx := testnode.Chain(t, "direct-single", 2, 2, 4096)
	cache := testnode.NewCache(t, testnode.CacheOptions{Compression: "xz"}, fx.Root)

	t.Run("unknown key", func(t *testing.T) {
		// A key with the cache key's name but other key material:
		// the narinfos' signatures do not verify. The node trusts
		// nothing itself: nix-init is the only gate.
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		impostor := binarycache.PublicKey{Name: cache.KeyName, Key: pub}.String()
		w := newSingleUserWorld(t, testnode.NodeOptions{})
		d := &Direct{URLs: []string{cache.URL}, Options: cacheOptions(t, impostor)}
		_, err = w.realise(t, d, 10*time.Second, Root{Name: "app", Path: fx.Root})
		if !errors.Is(err, binarycache.ErrUntrusted) || binarycache.IsTransient(err) || !strings.Contains(err.Error(), fx.Root) {
			t.Fatalf("err = %v", err)
		}
		if n := cache.Count("/nar/"); n != 0 {
			t.Errorf("%d NAR requests for paths not signed by a trusted key", n)
		}
		if v := w.node.ValidPaths(t); len(v) != 0 {
			t.Errorf("imported %v", v)
		}
	})

	t.Run("success", func(t *testing.T) {
		w := newSingleUserWorld(t, testnode.NodeOptions{})
		d := &Direct{URLs: []string{cache.URL}, Options: cacheOptions(t, cache.PublicKey)}
		rep, err := w.realise(t, d, 30*time.Second, Root{Name: "app", Path: fx.Root})
		if err != nil {
			t.Fatal(err)
		}
		if bad := w.node.Invalid(t, fx.Closure...); len(bad) > 0 || len(rep.Substituted) != len(fx.Closure) {
			t.Fatalf("not valid after the run: %v; report %+v", bad, rep.Substituted)
		}
		if target, err := os.Readlink(rep.Roots[0].Link); err != nil || target != fx.Root {
			t.Errorf("link -> %q (%v)", target, err)
		}
		checkReferencesFirst(t, fetchedOrder(w.log.all()))
		checkStore(t, w.node, fx.Closure)
	})
}

// TestDirectClosureIndex plans from a closure index written by our own
// uploader: one request for the whole closure instead of one per path.
func TestDirectClosureIndex(t *testing.T) {
	t.Parallel()
	fx := testnode.Chain(t, "direct-index", 3, 2, 2048)
	cache := testnode.NewCache(t, testnode.CacheOptions{}) // empty
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key, err := binarycache.LoadSecretKey(cache.SecretKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	host, err := store.Spawn(ctx, store.StdioOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	up, err := binarycache.NewUploader(ctx, cache.FileURL(), key, binarycache.UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.Upload(ctx, host, fx.Roots); err != nil {
		t.Fatal(err)
	}
	if err := cache.Reset(); err != nil {
		t.Fatal(err)
	}
	w := newDaemonWorld(t, testnode.NodeOptions{TrustedPublicKeys: []string{cache.PublicKey}})
	d := &Direct{URLs: []string{cache.URL}, Options: cacheOptions(t, cache.PublicKey)}
	if _, err := w.realise(t, d, 30*time.Second, Root{Name: "app", Path: fx.Root}); err != nil {
		t.Fatal(err)
	}
	if n := cache.Count(".narinfo"); n != 0 {
		t.Errorf("%d narinfo requests despite the closure index: %q", n, cache.Requests())
	}
	if n, m := cache.Count(binarycache.ClosureIndexSuffix), cache.Count("/nar/"); n != 1 || m != len(fx.Closure) {
		t.Errorf("%d closure index and %d NAR requests: %q", n, m, cache.Requests())
	}
	checkStore(t, w.node, fx.Closure)
	if bad := w.node.Invalid(t, fx.Closure...); len(bad) > 0 {
		t.Fatalf("not valid: %v", bad)
	}
}

// directFaults is the shared fixture of the fault cases.
func directFaults(t *testing.T) *testnode.Fixture {
	return testnode.Chain(t, "direct-faults", 2, 2, 8192)
}

// daemonCase is a fresh node trusting cache, and a Direct reading it.
func daemonCase(t *testing.T, cache *testnode.Cache, tune func(*Direct)) (*directWorld, *Direct) {
	t.Helper()
	w := newDaemonWorld(t, testnode.NodeOptions{TrustedPublicKeys: []string{cache.PublicKey}})
	d := &Direct{URLs: []string{cache.URL}, Options: cacheOptions(t, cache.PublicKey)}
	if tune != nil {
		tune(d)
	}
	return w, d
}

func TestDirectTransientFaults(t *testing.T) {
	t.Parallel()
	fx := directFaults(t)
	app := Root{Name: "app", Path: fx.Root}

	t.Run("503 and resets", func(t *testing.T) {
		t.Parallel()
		cache := testnode.NewCache(t, testnode.CacheOptions{}, fx.Root)
		w, d := daemonCase(t, cache, nil)
		cache.FailMatching("nix-cache-info", 503, 1)
		cache.FailMatching(".narinfo", 503, 3)
		cache.Drop("/nar/", 2)
		cache.FailMatching("/nar/", 503, 2)
		rep, err := w.realise(t, d, 30*time.Second, app)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Retries != 0 || !w.log.has("retrying") {
			t.Errorf("%d engine retries; the cache client's retries were not logged", rep.Retries)
		}
		faults := 0
		for _, r := range cache.Log() {
			if r.Fault != "" {
				faults++
			}
		}
		if faults != 8 {
			t.Errorf("%d faults injected, want 8", faults)
		}
		checkStore(t, w.node, fx.Closure)
		if bad := w.node.Invalid(t, fx.Closure...); len(bad) > 0 {
			t.Fatalf("not valid: %v", bad)
		}
	})

	t.Run("engine retries", func(t *testing.T) {
		t.Parallel()
		// One download at a time and two attempts per request: the first
		// NAR fails twice, which fails the attempt; the engine's next
		// attempt (a new connection, a new plan) succeeds.
		cache := testnode.NewCache(t, testnode.CacheOptions{}, fx.Root)
		w, d := daemonCase(t, cache, func(d *Direct) { d.Jobs = 1; d.Options.Attempts = 2 })
		cache.FailMatching("/nar/", 503, 2)
		rep, err := w.realise(t, d, 30*time.Second, app)
		if probe := (&binarycache.Error{Op: "download NAR", Err: &binarycache.HTTPError{StatusCode: 503}}); !Transient(probe) {
			t.Fatalf("Transient(%v) = false", probe)
		}
		if err != nil {
			t.Fatal(err)
		}
		if rep.Retries != 1 {
			t.Errorf("%d retries, want 1", rep.Retries)
		}
		checkStore(t, w.node, fx.Closure)
	})

	t.Run("truncated body", func(t *testing.T) {
		t.Parallel()
		// The NARs' headers arrive, then the server goes down: every
		// body is cut short. The downloads resume (Range) once it is back.
		cache := testnode.NewCache(t, testnode.CacheOptions{}, fx.Root)
		w, d := daemonCase(t, cache, func(d *Direct) { d.Options.RetryDelay = 100 * time.Millisecond; d.Options.Attempts = 8 })
		cache.StallBodyMatching("/nar/", time.Minute)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for deadline := time.Now().Add(20 * time.Second); cache.Count("/nar/") < len(fx.Closure); time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					return
				}
			}
			time.Sleep(50 * time.Millisecond)
			cache.StallBody(0)
			cache.Down(300 * time.Millisecond)
		}()
		_, err := w.realise(t, d, 30*time.Second, app)
		<-done
		if err != nil {
			t.Fatal(err)
		}
		if n := cache.Count("/nar/"); n <= len(fx.Closure) {
			t.Errorf("%d NAR requests: nothing was cut short?", n)
		}
		checkStore(t, w.node, fx.Closure)
		if bad := w.node.Invalid(t, fx.Closure...); len(bad) > 0 {
			t.Fatalf("not valid: %v", bad)
		}
	})

	t.Run("stall heals", func(t *testing.T) {
		t.Parallel()
		// The first NAR bodies stall; the client gives up on them after
		// its stall timeout and resumes, and the resumed ones flow.
		cache := testnode.NewCache(t, testnode.CacheOptions{}, fx.Root)
		w, d := daemonCase(t, cache, func(d *Direct) { d.Options.StallTimeout = 300 * time.Millisecond })
		cache.StallBodyMatching("/nar/", time.Minute)
		go func() {
			for deadline := time.Now().Add(20 * time.Second); cache.Count("/nar/") == 0 && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
			cache.StallBody(0)
		}()
		start := time.Now()
		if _, err := w.realise(t, d, 30*time.Second, app); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el > 10*time.Second {
			t.Errorf("took %v", el)
		}
		checkStore(t, w.node, fx.Closure)
		if bad := w.node.Invalid(t, fx.Closure...); len(bad) > 0 {
			t.Fatalf("not valid: %v", bad)
		}
	})

	t.Run("stall forever", func(t *testing.T) {
		t.Parallel()
		cache := testnode.NewCache(t, testnode.CacheOptions{}, fx.Root)
		w, d := daemonCase(t, cache, func(d *Direct) {
			d.Options.StallTimeout = 200 * time.Millisecond
			d.Options.Attempts = 2
		})
		cache.StallBodyMatching("/nar/", time.Minute)
		start := time.Now()
		_, err := w.realise(t, d, 3*time.Second, app)
		if el := time.Since(start); el > 15*time.Second {
			t.Errorf("gave up after %v", el)
		}
		// Stalled (the cache client's retries are spent), or, once the
		// engine retries the cache client's transient errors, out of time.
		if !errors.Is(err, binarycache.ErrStalled) && !errors.Is(err, ErrGaveUp) {
			t.Fatalf("err = %v", err)
		}
		if !strings.Contains(err.Error(), cache.URL) || !strings.Contains(err.Error(), "/nix/store/") {
			t.Errorf("the error does not name the path and the cache: %v", err)
		}
		if v := w.node.ValidPaths(t); len(v) != 0 {
			t.Errorf("valid: %v", v)
		}
		checkStore(t, w.node)
	})
}

// rawNar writes NAR tokens as strings (length, bytes, zero padding), which
// lets a test write what the nar package's Writer refuses to.
func rawNar(tokens ...string) []byte {
	var b bytes.Buffer
	for _, s := range tokens {
		binary.Write(&b, binary.LittleEndian, uint64(len(s)))
		b.WriteString(s)
		b.Write(make([]byte, (8-len(s)%8)%8))
	}
	return b.Bytes()
}

// replaceNar puts data in the cache as storePath's NAR (uncompressed),
// with a narinfo signed by the cache's key whose NarHash and NarSize match
// data: only the NAR's contents can give it away.
func replaceNar(t *testing.T, cache *testnode.Cache, storePath string, data []byte) {
	t.Helper()
	raw, err := os.ReadFile(cache.NarinfoFile(storePath))
	if err != nil {
		t.Fatal(err)
	}
	ni, err := binarycache.ParseNarInfo(raw)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	ni.NarHash = "sha256:" + nixbase32.EncodeToString(sum[:])
	ni.NarSize = uint64(len(data))
	ni.URL = "nar/" + nixbase32.EncodeToString(sum[:]) + ".nar"
	ni.Compression = "none"
	ni.FileHash, ni.FileSize, ni.Sigs = "", 0, nil
	key, err := binarycache.LoadSecretKey(cache.SecretKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := binarycache.Sign(ni, key); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cache.Dir, ni.URL), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cache.NarinfoFile(storePath), []byte(ni.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkRefused checks a permanent failure about path that imported
// neither path nor anything referring to it, and fetched no more than
// allowed.
// corruptNar flips a byte in the middle of storePath's NAR in an
// uncompressed cache: in a file's contents, so that only the hash tells.
func corruptNar(t *testing.T, cache *testnode.Cache, storePath string) {
	t.Helper()
	file := cache.NarFile(t, storePath)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x55
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func checkRefused(t *testing.T, w *directWorld, fx *testnode.Fixture, rep *Report, err error, path string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	if Transient(err) || binarycache.IsTransient(err) || rep.Retries != 0 {
		t.Errorf("a permanent failure was retried or looks transient (%d retries): %v", rep.Retries, err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("the error does not name %s: %v", path, err)
	}
	if w.node.Valid(t, path) || w.node.Valid(t, fx.Root) {
		t.Errorf("%s or the root was imported", path)
	}
	checkStore(t, w.node, fx.Closure)
}

func TestDirectPermanentFaults(t *testing.T) {
	t.Parallel()
	fx := directFaults(t)
	app := Root{Name: "app", Path: fx.Root}
	leaf := fx.Levels[0][0]

	t.Run("hash mismatch", func(t *testing.T) {
		t.Parallel()
		cache := testnode.NewCache(t, testnode.CacheOptions{Compression: "none"}, fx.Root)
		corruptNar(t, cache, leaf)
		tmp := t.TempDir()
		w, d := daemonCase(t, cache, func(d *Direct) { d.TempDir = tmp })
		rep, err := w.realise(t, d, 30*time.Second, app)
		checkRefused(t, w, fx, rep, err, leaf)
		checkEmpty(t, tmp)
		if !errors.Is(err, binarycache.ErrHashMismatch) || !strings.Contains(err.Error(), cache.URL) {
			t.Errorf("err = %v", err)
		}
	})

	t.Run("unsigned", func(t *testing.T) {
		t.Parallel()
		cache := testnode.NewCache(t, testnode.CacheOptions{NoSign: true}, fx.Root)
		w, d := daemonCase(t, cache, nil)
		rep, err := w.realise(t, d, 30*time.Second, app)
		checkRefused(t, w, fx, rep, err, fx.Root)
		if !errors.Is(err, binarycache.ErrUntrusted) || cache.Count("/nar/") != 0 {
			t.Errorf("err = %v; %d NAR requests", err, cache.Count("/nar/"))
		}
		if v := w.node.ValidPaths(t); len(v) != 0 {
			t.Errorf("valid: %v", v)
		}
	})

	t.Run("missing narinfo", func(t *testing.T) {
		t.Parallel()
		cache := testnode.NewCache(t, testnode.CacheOptions{}, fx.Root)
		gone := fx.Levels[0][1]
		if err := os.Remove(cache.NarinfoFile(gone)); err != nil {
			t.Fatal(err)
		}
		w, d := daemonCase(t, cache, nil)
		rep, err := w.realise(t, d, 30*time.Second, app)
		checkRefused(t, w, fx, rep, err, gone)
		var nf *NotFoundError
		if !errors.As(err, &nf) || !slices.Equal(nf.Paths, []string{gone}) || !slices.Equal(nf.Caches, []string{cache.URL}) {
			t.Errorf("err = %#v", err)
		}
		if n := cache.Count("/nar/"); n != 0 {
			t.Errorf("%d NARs fetched for a closure that cannot be complete", n)
		}
	})

	hostile := []struct {
		name string
		nar  []byte
	}{
		{"dot-dot entry", rawNar(nar.Magic, "(", "type", "directory",
			"entry", "(", "name", "..", "node", "(", "type", "regular", "contents", "pwned\n", ")", ")", ")")},
		// Nix 2.8 itself accepts unsorted entries.
		{"unsorted entries", rawNar(nar.Magic, "(", "type", "directory",
			"entry", "(", "name", "b", "node", "(", "type", "regular", "contents", "1", ")", ")",
			"entry", "(", "name", "a", "node", "(", "type", "regular", "contents", "2", ")", ")", ")")},
		// Complete and verified bytes that end mid-file: permanent, even
		// though it reads as a truncation.
		{"ends mid-file", append(rawNar(nar.Magic, "(", "type", "regular", "contents"),
			100, 0, 0, 0, 0, 0, 0, 0, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h')},
		{"trailing data", append(rawNar(nar.Magic, "(", "type", "regular", "contents", "x", ")"), rawNar("more")...)},
	}
	for _, h := range hostile {
		t.Run(h.name, func(t *testing.T) {
			t.Parallel()
			cache := testnode.NewCache(t, testnode.CacheOptions{}, fx.Root)
			replaceNar(t, cache, leaf, h.nar)
			w, d := daemonCase(t, cache, nil)
			rep, err := w.realise(t, d, 30*time.Second, app)
			checkRefused(t, w, fx, rep, err, leaf)
			if !errors.Is(err, nar.ErrInvalid) || !strings.Contains(err.Error(), cache.URL) {
				t.Errorf("err = %v", err)
			}
		})
	}
}

// TestDirectParallel: downloads overlap (each NAR body is held for a
// while), and independent paths import on several connections, each only
// once its references are valid (the daemon refuses otherwise).
func TestDirectParallel(t *testing.T) {
	t.Parallel()
	fx := testnode.Chain(t, "direct-parallel", 2, 4, 4096)
	cache := testnode.NewCache(t, testnode.CacheOptions{}, fx.Root)
	w, d := daemonCase(t, cache, nil)
	d.Imports = 4 // parallel imports work, even if one connection is the default
	const stall = 600 * time.Millisecond
	cache.StallBodyMatching("/nar/", stall)
	start := time.Now()
	if _, err := w.realise(t, d, 30*time.Second, Root{Name: "app", Path: fx.Root}); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	sum := time.Duration(len(fx.Closure)) * stall
	t.Logf("%d NARs each held %v: %v in all, %d connections", len(fx.Closure), stall, elapsed, w.connects.Load())
	if elapsed > sum/2 {
		t.Errorf("%d NARs each held %v took %v: the downloads did not overlap", len(fx.Closure), stall, elapsed)
	}
	if n := w.connects.Load(); n < 2 || n > 1+int32(d.Imports) {
		t.Errorf("%d connections opened, want the session's and up to %d for imports", n, d.Imports)
	}
	checkReferencesFirst(t, fetchedOrder(w.log.all()))
	checkStore(t, w.node, fx.Closure)
	if bad := w.node.Invalid(t, fx.Closure...); len(bad) > 0 {
		t.Fatalf("not valid: %v", bad)
	}
}

func TestDirectFallback(t *testing.T) {
	t.Parallel()
	fx := testnode.Chain(t, "direct-fallback", 2, 1, 1024)
	cache := testnode.NewCache(t, testnode.CacheOptions{}, fx.Root)
	// The daemon's own substituters have the paths.
	w := newDaemonWorld(t, testnode.NodeOptions{
		Substituters:      []string{cache.URL},
		TrustedPublicKeys: []string{cache.PublicKey},
	})
	app := Root{Name: "app", Path: fx.Root}
	const s3 = "s3://nix-aurora-no-such-bucket"

	// No fallback: an error that says why.
	_, err := w.realise(t, &Direct{URLs: []string{s3}}, 10*time.Second, app)
	if err == nil || !strings.Contains(err.Error(), "direct substitution unavailable") || !strings.Contains(err.Error(), s3) {
		t.Fatalf("err = %v", err)
	}
	if v := w.node.ValidPaths(t); len(v) != 0 {
		t.Errorf("valid: %v", v)
	}

	d := &Direct{URLs: []string{s3}, Options: cacheOptions(t, cache.PublicKey), Fallback: Daemon{}}
	if _, err := w.realise(t, d, 30*time.Second, app); err != nil {
		t.Fatal(err)
	}
	if !w.log.has("direct substitution unavailable (") || !w.log.has("): letting the daemon substitute") {
		t.Errorf("the fallback was not logged")
	}
	if bad := w.node.Invalid(t, fx.Closure...); len(bad) > 0 {
		t.Fatalf("not valid: %v", bad)
	}
	checkStore(t, w.node, fx.Closure)

	// A cache nix-init can read lacks a path, and one it cannot read
	// might have it: the daemon, which can read both, substitutes.
	fx2 := testnode.Chain(t, "direct-fallback-2", 1, 1, 1024)
	cache.Add(t, fx2.Root)
	empty := testnode.NewCache(t, testnode.CacheOptions{})
	d = &Direct{URLs: []string{s3, empty.URL}, Options: cacheOptions(t, empty.PublicKey), Fallback: Daemon{}}
	if _, err := w.realise(t, d, 30*time.Second, Root{Name: "two", Path: fx2.Root}); err != nil {
		t.Fatal(err)
	}
	if !w.log.has(fx2.Root + " is in none of the substituters nix-init can read") {
		t.Errorf("the fallback was not logged")
	}
	if bad := w.node.Invalid(t, fx2.Closure...); len(bad) > 0 {
		t.Fatalf("not valid: %v", bad)
	}
	checkStore(t, w.node, fx.Closure, fx2.Closure)
}

// TestDirectUntrustedClient: a client the daemon does not trust imports
// what the daemon's own keys accept, and nothing else.
func TestDirectUntrustedClient(t *testing.T) {
	t.Parallel()
	fx := testnode.Chain(t, "direct-untrusted", 2, 1, 2048)
	cache := testnode.NewCache(t, testnode.CacheOptions{}, fx.Root)
	app := Root{Name: "app", Path: fx.Root}
	const untrusted = "trusted-users = nix-aurora-nobody-else"

	t.Run("daemon trusts the key", func(t *testing.T) {
		t.Parallel()
		w := newDaemonWorld(t, testnode.NodeOptions{TrustedPublicKeys: []string{cache.PublicKey}, ExtraConf: untrusted})
		d := &Direct{URLs: []string{cache.URL}, Options: cacheOptions(t, cache.PublicKey)}
		if _, err := w.realise(t, d, 30*time.Second, app); err != nil {
			t.Fatal(err)
		}
		if log := w.node.DaemonLog(); strings.Contains(log, "(trusted)") || !strings.Contains(log, "user root") {
			t.Fatalf("the client was trusted:\n%s", log)
		}
		if bad := w.node.Invalid(t, fx.Closure...); len(bad) > 0 {
			t.Fatalf("not valid: %v", bad)
		}
		checkStore(t, w.node, fx.Closure)
	})

	t.Run("daemon does not trust the key", func(t *testing.T) {
		t.Parallel()
		w := newDaemonWorld(t, testnode.NodeOptions{ExtraConf: untrusted})
		d := &Direct{URLs: []string{cache.URL}, Options: cacheOptions(t, cache.PublicKey)}
		rep, err := w.realise(t, d, 30*time.Second, app)
		if err == nil || !testnix.SignatureRefused.MatchString(err.Error()) || !strings.Contains(err.Error(), "trusted-public-keys") ||
			!strings.Contains(err.Error(), "import /nix/store/") || !strings.Contains(err.Error(), cache.URL) {
			t.Fatalf("err = %v", err)
		}
		if Transient(err) || rep.Retries != 0 {
			t.Errorf("retried a refusal (%d retries)", rep.Retries)
		}
		if v := w.node.ValidPaths(t); len(v) != 0 {
			t.Errorf("valid: %v", v)
		}
		checkStore(t, w.node)
	})
}

// TestDirectUnreachableCache: a cache that cannot be reached is no proof
// that it lacks a path. Such failures are transient (the engine retries
// them until its budget runs out), never "not found", and never a reason
// to fall back.
func TestDirectUnreachableCache(t *testing.T) {
	t.Parallel()
	w := newDaemonWorld(t, testnode.NodeOptions{})
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "nix-cache-info"), []byte("StoreDir: /nix/store\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const down = "http://127.0.0.1:1" // nothing listens there: refused
	nowhere := Root{Name: "nowhere", Path: "/nix/store/00000000000000000000000000000000-nowhere"}
	for _, urls := range [][]string{{down}, {"file://" + dir, down}} {
		opts := cacheOptions(t)
		opts.Attempts = 1
		d := &Direct{URLs: urls, Options: opts, Fallback: Daemon{}}
		start := time.Now()
		rep, err := w.realise(t, d, 2*time.Second, nowhere)
		var nf *NotFoundError
		if err == nil || errors.As(err, &nf) || (!errors.Is(err, ErrGaveUp) && !binarycache.IsTransient(err)) {
			t.Errorf("%v: err = %v", urls, err)
		}
		// The last attempt may have been cut short by the budget anywhere;
		// the earlier ones said what was wrong.
		if !strings.Contains(err.Error(), down) && !w.log.has("transient failure, retrying in 10ms: no substituter can be reached: open from "+down) &&
			!w.log.has("transient failure, retrying in 10ms: cannot tell whether a substituter has "+nowhere.Path) {
			t.Errorf("%v: the cause was not told", urls)
		}
		if w.log.has("letting the daemon substitute") {
			t.Errorf("%v: fell back", urls)
		}
		if el := time.Since(start); el > 10*time.Second {
			t.Errorf("%v: took %v", urls, el)
		}
		t.Logf("%v: %d retries", urls, rep.Retries)
	}
}

// substituterFunc adapts a function to Substituter.
type substituterFunc func(ctx context.Context, s *Session, paths []string) error

func (f substituterFunc) Substitute(ctx context.Context, s *Session, paths []string) error {
	return f(ctx, s, paths)
}

func TestDirectWithoutCaches(t *testing.T) {
	var log logLines
	sess := &Session{Config: &Config{Log: log.logf}, report: &Report{}}
	var got []string
	d := &Direct{Fallback: substituterFunc(func(_ context.Context, _ *Session, paths []string) error {
		got = paths
		return nil
	})}
	if err := d.Substitute(context.Background(), sess, []string{somePath}); err != nil || !slices.Equal(got, []string{somePath}) {
		t.Errorf("err %v, fallback got %v", err, got)
	}
	if !log.has("direct substitution unavailable (no substituters configured): letting the daemon substitute") {
		t.Errorf("log %q", log.all())
	}
	d.Fallback = nil
	if err := d.Substitute(context.Background(), sess, []string{somePath}); err == nil || !strings.Contains(err.Error(), "no substituters configured") {
		t.Errorf("without a fallback: %v", err)
	}
}
