package bench

// BenchmarkProduction, the production matrix. The one documented command
// runs it on this machine's Nix and then in the Debian trixie chroot
// (Nix 2.26), and prints both results:
//
//	bench/production.sh
//
// which runs, on each (TMPDIR=/dev/shm: see BenchmarkColdStart on slow
// file creation; inside the chroot /dev/shm is a tmpfs too):
//
//	TMPDIR=/dev/shm go test ./bench -run '^$' -bench Production -benchtime 3x -timeout 90m
//	scripts/nix-chroot run trixie env TMPDIR=/dev/shm go test ./bench -run '^$' -bench Production -benchtime 3x -timeout 90m
//
// A subset: -bench 'Production/fixture=real/cache=xz/latency=20ms/mode=daemon'.
// A quick look: BENCH_REAL_SCALE=10 (percent of the real fixture's files).

import (
	"bufio"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/nix-aurora/nix-aurora/binarycache"
	"github.com/nix-aurora/nix-aurora/internal/testnix"
	"github.com/nix-aurora/nix-aurora/internal/testnode"
	"github.com/nix-aurora/nix-aurora/localstore"
)

// BenchmarkProduction: nix-init against `nix-store -r` on the same fresh
// node and the same cache, in the conditions of production, as a matrix
//
//	fixture=real|synthetic / cache=xz|zstd|push / latency=0s|20ms|50ms / mode=single-user|daemon
//
// Fixtures: real (buildRealFixture: on the machine of BENCHMARKS.md 62
// store paths, 12,600 real files, 210 MB, 9 levels: Go's sources, Python's
// standard library, shared libraries, Go's compiler and linker; it is made
// from what the machine has, so a chroot's has a smaller Python and other
// libraries) and synthetic (BenchmarkColdStart's Chain: 397 paths of random data, 12
// levels, each path referring to every path of the level below).
//
// Caches: xz and zstd are written by `nix copy` (xz is its default, what
// most caches hold); push by our uploader (zstd, with closure indexes). The
// synthetic fixture gets push and xz only, to keep the run short. Latency
// is per request, headers at once and the body after it (Cache.StallBody).
//
// Modes: single-user, as root on the node's store (nix-store with
// NIX_REMOTE=DIR; nix-init --store DIR, which unpacks itself and registers
// with nix-store --load-db); daemon, as the
// user nobody through a fresh nix-daemon whose nix.conf has the cache and
// trusts its key (nix-init imports with AddToStoreNar; nix-store lets the
// daemon substitute).
//
// Variants, each run on a new node (fresh store, empty narinfo cache),
// interleaved with a rotating order, medians of -benchtime N runs:
//
//	nix-store-default  Nix's defaults
//	nix-store-tuned    single-user: --option max-jobs 64 --option http-connections 64
//	                   (and max-substitution-jobs 64 from Nix 2.16); daemon: the
//	                   same three in the daemon's nix.conf and the client's --max-jobs 64
//	nix-init           nix-init's defaults (--jobs 16, http-connections 25)
//	nix-init-tuned     --jobs 64 and http-connections = 64; with latency only
//	                   (at 0 ms the run is bound by the processor, and it is the same)
//	floor              at 0 ms only: the same NARs read from the cache's directory,
//	                   decompressed, hashed (sha256) and unpacked into a fresh
//	                   directory by our own packages on all cores; no Nix, no HTTP
//
// Metrics: VARIANT-s (median seconds); x-vs-nix-store-default and
// x-vs-nix-store-tuned (nix-store's median over nix-init's: above 1,
// nix-init is faster), tuned-x-vs-… for nix-init-tuned; nix-init-x-floor
// (nix-init over the floor); nix-init-maxrss-KiB (its own VmHWM from
// --report, the largest of its runs). Single-user: child-nix-daemon- and
// child-nix-store-maxrss-KiB, the peak RSS of nix-init's children (its
// nix-daemon --stdio, its nix-store --load-db), from their rusage in one
// extra, untimed run (see rusageWrap). Daemon mode: VARIANT-daemon-KiB, the
// largest VmHWM of a process of the daemon (the daemon and its workers),
// and VARIANT-daemon-sum-KiB, the largest sum of their VmRSS, sampled
// every 10 ms during the runs. Not the daemon's rusage once stopped: Linux
// starts a child's ru_maxrss at its parent's peak, and the daemon's parent
// is the benchmark, so that would report the benchmark's memory.
//
// Environment: BENCH_REAL_SCALE (1 to 100, default 100) shrinks the real
// fixture; BENCH_COLD_DEPTH, _WIDTH, _BYTES the synthetic one, as for
// BenchmarkColdStart.
func BenchmarkProduction(b *testing.B) {
	requireNix(b)
	bin := nixInitBinary(b)
	host := fmt.Sprintf("Nix %s, %d CPUs, TMPDIR=%s", testnix.Version(b), runtime.NumCPU(), os.TempDir())

	latencies := []time.Duration{0, 20 * time.Millisecond, 50 * time.Millisecond}
	type cacheKind struct {
		name string
		make func(b *testing.B, root string) *testnode.Cache
	}
	xz := cacheKind{"xz", func(b *testing.B, root string) *testnode.Cache { return copiedCache(b, "xz", root) }}
	zst := cacheKind{"zstd", func(b *testing.B, root string) *testnode.Cache { return copiedCache(b, "zstd", root) }}
	push := cacheKind{"push", func(b *testing.B, root string) *testnode.Cache { return pushedCache(b, root, true) }}
	fixtures := []struct {
		name   string
		caches []cacheKind
		build  func(b *testing.B) (root string, closure []string, about string)
	}{
		{"real", []cacheKind{xz, zst, push}, func(b *testing.B) (string, []string, string) {
			scale := envInt("BENCH_REAL_SCALE", 100)
			if scale > 100 {
				b.Fatalf("BENCH_REAL_SCALE=%d: at most 100 (percent)", scale)
			}
			start := time.Now()
			fx := buildRealFixture(b, scale)
			about := fmt.Sprintf("real fixture at scale %d%%: %d store paths (%s, root), %d levels, %d files, %.0f MB (built in %.0fs)",
				scale, len(fx.Closure), fx.Sources, fx.Levels+1, fx.Files, float64(fx.Bytes)/1e6, time.Since(start).Seconds())
			return fx.Root, fx.Closure, about
		}},
		{"synthetic", []cacheKind{push, xz}, func(b *testing.B) (string, []string, string) {
			depth, width, size := envInt("BENCH_COLD_DEPTH", 12), envInt("BENCH_COLD_WIDTH", 33), envInt("BENCH_COLD_BYTES", 256<<10)
			fx := testnode.Chain(b, "prod", depth, width, size)
			return fx.Root, fx.Closure, fmt.Sprintf("synthetic fixture: %d store paths, %d levels, %d MB of random data",
				len(fx.Closure), depth+1, depth*width*size>>20)
		}},
	}
	for _, f := range fixtures {
		b.Run("fixture="+f.name, func(b *testing.B) {
			root, closure, about := f.build(b)
			about = host + "; " + about
			for _, ck := range f.caches {
				b.Run("cache="+ck.name, func(b *testing.B) {
					start := time.Now()
					cache := ck.make(b, root)
					about := fmt.Sprintf("%s; %s cache: %.0f MB (written in %.0fs)", about, ck.name, float64(treeSize(cache.Dir))/1e6, time.Since(start).Seconds())
					for _, lat := range latencies {
						b.Run("latency="+lat.String(), func(b *testing.B) {
							for _, mode := range []string{"single-user", "daemon"} {
								b.Run("mode="+mode, func(b *testing.B) {
									cache.StallBody(lat)
									defer cache.StallBody(0)
									c := &prodCase{about: about, bin: bin, root: root, closure: closure, cache: cache, latency: lat, daemon: mode == "daemon"}
									c.run(b)
								})
							}
						})
					}
				})
			}
		})
	}
}

// requireNix fails, rather than skips, without Nix or root: a benchmark
// that silently measures nothing would read as a result.
func requireNix(b *testing.B) {
	b.Helper()
	for _, tool := range testnix.Tools {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("%s not found on PATH: the benchmark needs Nix: %v", tool, err)
		}
	}
	if os.Geteuid() != 0 {
		b.Fatal("the benchmark needs root (nodes' daemons, runs as nobody)")
	}
}

// copiedCache is a cache written by `nix copy` with the given compression.
// In eight slices of the closure, dependencies first: one `nix copy` of
// the real closure with xz takes close to the harness's 2-minute timeout
// for a Nix command on 2 cores.
func copiedCache(b *testing.B, compression, root string) *testnode.Cache {
	b.Helper()
	cache := testnode.NewCache(b, testnode.CacheOptions{Compression: compression})
	for _, batch := range closureBatches(b, root, 8) {
		cache.Add(b, batch...)
	}
	return cache
}

// closureBatches splits root's closure (dependencies first) into n slices.
func closureBatches(b *testing.B, root string, n int) [][]string {
	closure := testnode.Closure(b, root)
	var out [][]string
	for i := 0; i < n; i++ {
		if s := closure[i*len(closure)/n : (i+1)*len(closure)/n]; len(s) > 0 {
			out = append(out, s)
		}
	}
	return out
}

// prodCase is one cell of the matrix.
type prodCase struct {
	about   string // the fixture and the cache
	bin     string
	root    string
	closure []string
	cache   *testnode.Cache
	latency time.Duration
	daemon  bool
}

// result is one timed run.
type result struct {
	wall       time.Duration
	rss        int64 // nix-init's own VmHWM, KiB
	daemonHWM  int64 // daemon mode: largest VmHWM of the daemon's processes, KiB
	daemonSum  int64 // daemon mode: largest sum of their VmRSS, KiB
	hasDaemonM bool
}

type variant struct {
	name string
	run  func(b *testing.B) result
}

func (c *prodCase) run(b *testing.B) {
	// With -benchtime Nx, N > 1, a benchmark runs once with b.N = 1 and
	// then with b.N = N, and reports the second: the first would add a
	// third of the time to a matrix of slow runs.
	if b.N == 1 && benchtimeRuns() > 1 {
		return
	}
	tuned := []string{"max-jobs = 64", "http-connections = 64"}
	storeTuned := []string{"--option", "max-jobs", "64", "--option", "http-connections", "64"}
	if testnix.AtLeast(b, 2, 16) {
		tuned = append(tuned, "max-substitution-jobs = 64")
		storeTuned = append(storeTuned, "--option", "max-substitution-jobs", "64")
	}
	var vs []variant
	if c.daemon {
		conf := strings.Join(tuned, "\n")
		vs = []variant{
			{"nix-store-default", c.daemonNixStore("")},
			{"nix-store-tuned", c.daemonNixStore(conf, "--max-jobs", "64")},
			{"nix-init", c.daemonNixInit("", nil)},
		}
		if c.latency > 0 {
			vs = append(vs, variant{"nix-init-tuned", c.daemonNixInit(conf, nil, "--jobs", "64")})
		}
	} else {
		vs = []variant{
			{"nix-store-default", c.singleNixStore()},
			{"nix-store-tuned", c.singleNixStore(storeTuned...)},
			{"nix-init", c.singleNixInit("", "", nil)},
		}
		if c.latency > 0 {
			vs = append(vs, variant{"nix-init-tuned", c.singleNixInit("http-connections = 64", "", nil, "--jobs", "64")})
		}
	}
	// BENCH_NIX_INIT_ARGS adds a variant, nix-init-extra, with these
	// arguments (space-separated), and BENCH_NIX_INIT_ENV with these
	// VAR=value added to its environment, to try an option against the rest.
	extra, env := strings.Fields(os.Getenv("BENCH_NIX_INIT_ARGS")), strings.Fields(os.Getenv("BENCH_NIX_INIT_ENV"))
	if len(extra) > 0 || len(env) > 0 {
		if c.daemon {
			vs = append(vs, variant{"nix-init-extra", c.daemonNixInit("", env, extra...)})
		} else {
			vs = append(vs, variant{"nix-init-extra", c.singleNixInit("", "", env, extra...)})
		}
	}
	if c.latency == 0 {
		vs = append(vs, variant{"floor", c.floor(b)})
	}

	runs := map[string][]result{}
	for i := 0; i < b.N; i++ {
		// A rotating order: no variant always runs first, or right after
		// the same other one.
		for j := range vs {
			v := vs[(i+j)%len(vs)]
			runs[v.name] = append(runs[v.name], v.run(b))
		}
	}

	med := map[string]time.Duration{}
	var summary []string
	for _, v := range vs {
		var walls []time.Duration
		for _, r := range runs[v.name] {
			walls = append(walls, r.wall)
		}
		med[v.name] = median(walls)
		b.ReportMetric(med[v.name].Seconds(), v.name+"-s")
		summary = append(summary, fmt.Sprintf("%s %.2fs", v.name, med[v.name].Seconds()))
	}
	for _, ours := range []string{"nix-init", "nix-init-tuned", "nix-init-extra"} {
		if med[ours] == 0 {
			continue
		}
		prefix := "" // x-vs-…, as BenchmarkColdStart names them
		if ours != "nix-init" {
			prefix = strings.TrimPrefix(ours, "nix-init-") + "-"
		}
		for _, theirs := range []string{"nix-store-default", "nix-store-tuned"} {
			x := float64(med[theirs]) / float64(med[ours])
			b.ReportMetric(x, prefix+"x-vs-"+theirs)
			summary = append(summary, fmt.Sprintf("%s %.2fx vs %s", ours, x, theirs))
		}
		var peak int64
		for _, r := range runs[ours] {
			peak = max(peak, r.rss)
		}
		b.ReportMetric(float64(peak), ours+"-maxrss-KiB")
		summary = append(summary, fmt.Sprintf("%s peak RSS %.1f MiB", ours, float64(peak)/1024))
	}
	if med["floor"] > 0 {
		x := float64(med["nix-init"]) / float64(med["floor"])
		b.ReportMetric(x, "nix-init-x-floor")
		summary = append(summary, fmt.Sprintf("nix-init %.2fx the floor", x))
	}
	if c.daemon {
		for _, v := range vs {
			var hwm, sum int64
			for _, r := range runs[v.name] {
				hwm, sum = max(hwm, r.daemonHWM), max(sum, r.daemonSum)
			}
			if runs[v.name][0].hasDaemonM {
				b.ReportMetric(float64(hwm), v.name+"-daemon-KiB")
				b.ReportMetric(float64(sum), v.name+"-daemon-sum-KiB")
				summary = append(summary, fmt.Sprintf("%s daemon side %.1f MiB (sum %.1f MiB)", v.name, float64(hwm)/1024, float64(sum)/1024))
			}
		}
	} else {
		children, floor := c.childrenRSS(b)
		for _, name := range []string{"nix-daemon", "nix-store"} {
			b.ReportMetric(float64(children[name]), "child-"+name+"-maxrss-KiB")
			summary = append(summary, fmt.Sprintf("child %s peak RSS %.1f MiB", name, float64(children[name])/1024))
		}
		summary = append(summary, fmt.Sprintf("(the wrapper's own %.1f MiB)", float64(floor)/1024))
	}
	b.ReportMetric(0, "ns/op")
	b.Logf("%s\n%d runs each: %s", c.about, b.N, strings.Join(summary, ", "))
}

// benchtimeRuns is N of -benchtime Nx, or 0.
func benchtimeRuns() int {
	f := flag.Lookup("test.benchtime")
	if f == nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSuffix(f.Value.String(), "x"))
	if err != nil || !strings.HasSuffix(f.Value.String(), "x") {
		return 0
	}
	return n
}

func (c *prodCase) singleNixStore(extra ...string) func(b *testing.B) result {
	return func(b *testing.B) result {
		node := testnode.NewNode(b, testnode.NodeOptions{Substituters: []string{c.cache.URL}, TrustedPublicKeys: []string{c.cache.PublicKey}})
		defer node.Discard(b)
		s := timed(b, node.Command("nix-store", append([]string{"-r", c.root}, extra...)...))
		return result{wall: s.wall}
	}
}

// singleNixInit runs nix-init on a node whose nix.conf has conf; with a
// non-empty wrap, its nix-daemon and nix-store are those of the directory
// wrap (see childrenRSS).
func (c *prodCase) singleNixInit(conf, wrap string, env []string, extra ...string) func(b *testing.B) result {
	return func(b *testing.B) result {
		node := testnode.NewNode(b, testnode.NodeOptions{ExtraConf: conf})
		defer node.Discard(b)
		report := filepath.Join(node.Dir, "report.json")
		args := append([]string{"--store", node.StoreURI(), "--substituter", c.cache.URL,
			"--trusted-public-key", c.cache.PublicKey, "--gc-root-dir", filepath.Join(node.Dir, "gc"),
			"--report", report}, extra...)
		if wrap != "" {
			args = append(args, "--nix-daemon", filepath.Join(wrap, "nix-daemon"))
		}
		cmd := node.Command(c.bin, append(args, "app="+c.root)...)
		cmd.Env = append(cmd.Env, env...)
		if wrap != "" {
			cmd.Env = append(cmd.Env, wrapEnv(b, wrap)...)
		}
		s := timed(b, cmd)
		return result{wall: s.wall, rss: reportedRSS(b, report, 0)}
	}
}

// daemonNode is a fresh node with a daemon that substitutes from the cache
// and trusts its key, and a sandbox of nobody on it. The socket is where
// Nix puts it, as on a real node.
func (c *prodCase) daemonNode(b *testing.B, conf string) (*testnode.Node, *testnode.Sandbox) {
	node := testnode.NewNode(b, testnode.NodeOptions{Substituters: []string{c.cache.URL},
		TrustedPublicKeys: []string{c.cache.PublicKey}, ExtraConf: conf, SocketInStateDir: true})
	node.StartDaemon(b)
	return node, testnode.NewSandbox(b, node)
}

// daemonRun times cmd (as nobody, through the node's daemon) while
// sampling the daemon's processes.
func daemonRun(b *testing.B, node *testnode.Node, sb *testnode.Sandbox, cmd *exec.Cmd) result {
	cmd.Env = append(cmd.Env, "NIX_REMOTE="+node.DaemonURI()) // sb.Command set sb.Env()
	smp := sampleTree(node.DaemonPID(), 10*time.Millisecond)
	s := timed(b, cmd)
	hwm, sum := smp.stop()
	return result{wall: s.wall, daemonHWM: hwm, daemonSum: sum, hasDaemonM: true}
}

func (c *prodCase) daemonNixStore(conf string, extra ...string) func(b *testing.B) result {
	return func(b *testing.B) result {
		node, sb := c.daemonNode(b, conf)
		defer node.Discard(b)
		return daemonRun(b, node, sb, sb.Command("nix-store", append([]string{"-r", c.root}, extra...)...))
	}
}

func (c *prodCase) daemonNixInit(conf string, env []string, extra ...string) func(b *testing.B) result {
	return func(b *testing.B) result {
		node, sb := c.daemonNode(b, conf)
		defer node.Discard(b)
		// nix-init is in a directory every user can enter (nixInitBinary).
		report := filepath.Join(sb.Dir, "report.json")
		args := append([]string{"--report", report}, extra...)
		cmd := sb.Command(c.bin, append(args, "app="+c.root)...)
		cmd.Env = append(cmd.Env, env...)
		r := daemonRun(b, node, sb, cmd)
		r.rss = reportedRSS(b, report, 0)
		return r
	}
}

// floor returns the floor variant: what a client's CPU must do for this
// cache at the least, without Nix and without the network. The narinfos
// are read once, untimed. Each run reads every NAR file from the cache's
// directory through a buffer, decompresses it with nix-init's decoders
// (binarycache.Decompress: liblzma for xz in a cgo build, as nix-init
// ships), hashes it (sha256, checked against NarHash) and unpacks it with
// localstore.Unpack (the strict nar.Reader, canonical modes) into a fresh
// directory under TMPDIR; largest first, on 2×NumCPU goroutines.
func (c *prodCase) floor(b *testing.B) func(b *testing.B) result {
	type nar struct {
		path, file, hash, compression string
		size                          uint64
	}
	var nars []nar
	for _, p := range c.closure {
		data, err := os.ReadFile(c.cache.NarinfoFile(p))
		if err != nil {
			b.Fatal(err)
		}
		ni, err := binarycache.ParseNarInfo(data)
		if err != nil {
			b.Fatal(err)
		}
		nars = append(nars, nar{p, filepath.Join(c.cache.Dir, filepath.FromSlash(ni.URL)), ni.NarHash, cmp.Or(ni.Compression, "bzip2"), ni.NarSize})
	}
	sort.SliceStable(nars, func(i, j int) bool { return nars[i].size > nars[j].size })
	one := func(dir string, n nar) error {
		f, err := os.Open(n.file)
		if err != nil {
			return err
		}
		defer f.Close()
		// nix-init's own decoders (liblzma for xz in the shipped build).
		r := binarycache.Decompress(n.compression, bufio.NewReaderSize(f, 64<<10))
		defer r.Close()
		h := sha256.New()
		tee := io.TeeReader(r, h)
		if _, err := localstore.Unpack(filepath.Join(dir, filepath.Base(n.path)), tee); err != nil {
			return fmt.Errorf("%s: %w", n.path, err)
		}
		if _, err := io.Copy(io.Discard, tee); err != nil {
			return err
		}
		sum := h.Sum(nil)
		if got := "sha256:" + nixbase32.EncodeToString(sum); got != n.hash && "sha256:"+hex.EncodeToString(sum) != n.hash {
			return fmt.Errorf("floor: %s: NAR hash %s, want %s", n.path, got, n.hash)
		}
		return nil
	}
	return func(b *testing.B) result {
		dir, err := os.MkdirTemp("", "bench-floor-")
		if err != nil {
			b.Fatal(err)
		}
		defer localstore.RemoveAll(dir)
		work := make(chan nar)
		errs := make(chan error, len(nars))
		var wg sync.WaitGroup
		start := time.Now()
		for i := 0; i < 2*runtime.NumCPU(); i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := range work {
					errs <- one(dir, n)
				}
			}()
		}
		for _, n := range nars {
			work <- n
		}
		close(work)
		wg.Wait()
		wall := time.Since(start)
		close(errs)
		for err := range errs {
			if err != nil {
				b.Fatalf("floor: %v", err)
			}
		}
		return result{wall: wall}
	}
}

// childrenRSS runs nix-init (defaults, single-user) once more, untimed,
// with its nix-daemon and nix-store wrapped (rusageWrap), and returns the
// largest peak RSS of each program among its children, in KiB, and the
// wrapper's own peak (a lower bound of what the kernel reports).
func (c *prodCase) childrenRSS(b *testing.B) (map[string]int64, int64) {
	wrap := b.TempDir()
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"nix-daemon", "nix-store"} {
		if err := os.Symlink(self, filepath.Join(wrap, name)); err != nil {
			b.Fatal(err)
		}
	}
	c.singleNixInit("", wrap, nil)(b)
	f, err := os.Open(filepath.Join(wrap, "rusage.log"))
	if err != nil {
		b.Fatalf("no child of nix-init was wrapped: %v", err)
	}
	defer f.Close()
	out := map[string]int64{}
	var floor int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var name string
		var rss, hwm int64
		if _, err := fmt.Sscan(sc.Text(), &name, &rss, &hwm); err != nil {
			b.Fatalf("rusage.log: %q: %v", sc.Text(), err)
		}
		out[name] = max(out[name], rss)
		floor = max(floor, hwm)
	}
	for _, name := range []string{"nix-daemon", "nix-store"} {
		if out[name] == 0 {
			b.Fatalf("nix-init ran no %s", name)
		}
		if out[name] <= floor {
			// The kernel counts, at exec, the peak of the process that
			// forked: the wrapper's.
			b.Logf("child %s: %d KiB is no more than the wrapper's own %d KiB: its peak is at most that", name, out[name], floor)
		}
	}
	return out, floor
}

// wrapEnv tells rusageWrap where the real programs are and where to log.
func wrapEnv(b *testing.B, wrap string) []string {
	env := []string{"BENCH_RUSAGE_LOG=" + filepath.Join(wrap, "rusage.log")}
	for _, name := range []string{"nix-daemon", "nix-store"} {
		p, err := exec.LookPath(name)
		if err != nil {
			b.Fatal(err)
		}
		env = append(env, "BENCH_RUSAGE_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_"))+"="+p)
	}
	return env
}

// The test binary is also the wrapper of nix-init's children, when run
// through a symlink named nix-daemon or nix-store with BENCH_RUSAGE_LOG
// set.
func init() {
	log := os.Getenv("BENCH_RUSAGE_LOG")
	name := filepath.Base(os.Args[0])
	if log == "" || (name != "nix-daemon" && name != "nix-store") {
		return
	}
	os.Exit(rusageWrap(log, name, os.Getenv("BENCH_RUSAGE_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_")))))
}

// rusageWrap runs the real program with this process's arguments, stdio
// and open files (nix-init's lock files stay held by the wrapper), waits
// for it and appends "NAME MAXRSS_KIB WRAPPER_HWM_KIB" to log. The child's
// ru_maxrss is its own peak, except that Linux starts it at the peak of
// the process that forked it, so the wrapper's own is logged too: a child
// at that value may have used less. Nix's rusage, not a sampled VmHWM:
// nix-store --load-db lives for milliseconds.
func rusageWrap(log, name, real string) int {
	if real == "" {
		fmt.Fprintf(os.Stderr, "rusageWrap: no real %s\n", name)
		return 127
	}
	hwm := procStatusKiB(os.Getpid(), "VmHWM:")
	cmd := exec.Command(real, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "rusageWrap: %v\n", err)
		return 127
	}
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	cmd.Wait()
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		fmt.Fprintf(f, "%s %d %d\n", name, ru.Maxrss, hwm)
		f.Close()
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return cmd.ProcessState.ExitCode()
}

// treeSampler samples the memory of a process and its descendants.
type treeSampler struct {
	quit     chan struct{}
	done     chan struct{}
	hwm, sum int64
}

// sampleTree samples pid's tree every interval until stop.
func sampleTree(pid int, every time.Duration) *treeSampler {
	s := &treeSampler{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			s.sample(pid)
			select {
			case <-s.quit:
				s.sample(pid) // the workers still there
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *treeSampler) sample(pid int) {
	var sum int64
	for _, p := range append([]int{pid}, treeOf(pid)...) {
		s.hwm = max(s.hwm, procStatusKiB(p, "VmHWM:"))
		sum += procStatusKiB(p, "VmRSS:")
	}
	s.sum = max(s.sum, sum)
}

// stop ends the sampling and returns the largest VmHWM of one process and
// the largest sum of VmRSS, in KiB.
func (s *treeSampler) stop() (hwm, sum int64) {
	close(s.quit)
	<-s.done
	return s.hwm, s.sum
}

// treeOf lists pid's descendants, from every thread's children.
func treeOf(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		data, _ := os.ReadFile(t)
		for _, f := range strings.Fields(string(data)) {
			if c, err := strconv.Atoi(f); err == nil && !slices.Contains(out, c) {
				out = append(out, c)
				out = append(out, treeOf(c)...)
			}
		}
	}
	return out
}

// procStatusKiB reads a "Vm…: N kB" line of /proc/PID/status (0 if gone).
func procStatusKiB(pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// hostCommand runs a Nix program on the host store, without the
// benchmark's NIX_* settings.
func hostCommand(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NIX_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return cmd
}
