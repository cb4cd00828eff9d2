package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/binarycache"
	"github.com/nix-aurora/nix-aurora/internal/testnix"
	"github.com/nix-aurora/nix-aurora/internal/testnode"
	"github.com/nix-aurora/nix-aurora/store"
)

// BenchmarkColdStart: a cold node (fresh store, empty narinfo cache)
// substitutes a closure of about 400 paths and 100 MB of incompressible
// data, 12 levels deep, zstd, signed, served on 127.0.0.1 with 0 and 20 ms
// of latency per request (headers at once, body after the delay, so that
// curl does not serialise requests). Compared in the same run:
//
//	nix-store-default  nix-store -r at Nix's defaults (max-jobs 1)
//	nix-store-tuned    nix-store -r --option max-jobs 64 --option http-connections 64
//	nix-init           nix-init at its defaults (--jobs 16; http-connections 25,
//	                   Nix's default), single-user like the nix-store runs: it
//	                   unpacks into the store and registers a batch per transaction
//	nix-init-tuned     the same tuning as nix-store-tuned: --jobs 64 and
//	                   http-connections = 64
//	nix-init-import    nix-init --unpack=false: each path imported through the
//	                   child nix-daemon (AddToStoreNar), as in daemon mode
//
// The cache is written by our uploader (what `nixaurora push` does), so it
// has closure indexes; nix-init-bfs runs against the same cache without
// them, as after `nix copy`. Each run gets a new node. Reported: median
// seconds of each, the speedups of nix-init and of nix-init-tuned, and
// nix-init's peak RSS.
//
// The nodes live under TMPDIR. Both Nix and nix-init create some 2,000
// files per run, so a file system whose file creation is slow dominates
// both (on the machine of BENCHMARKS.md, ext4 under /tmp took 0.8 ms per
// created file at times, 30 times what the same disk took elsewhere):
// TMPDIR=/dev/shm measures the work itself.
//
// Environment: BENCH_COLD_PATHS_WIDTH, BENCH_COLD_DEPTH, BENCH_COLD_BYTES
// shrink the fixture for a quick look.
func BenchmarkColdStart(b *testing.B) {
	testnix.Require(b)
	testnix.RequireRoot(b)
	bin := nixInitBinary(b)
	depth, width, size := envInt("BENCH_COLD_DEPTH", 12), envInt("BENCH_COLD_WIDTH", 33), envInt("BENCH_COLD_BYTES", 256<<10)
	fx := testnode.Chain(b, "cold", depth, width, size)
	b.Logf("fixture: %d paths, %d levels, %d MB of data", len(fx.Closure), depth, depth*width*size>>20)

	cache := pushedCache(b, fx.Root, true)
	bfsCache := pushedCache(b, fx.Root, false)

	for _, latency := range []time.Duration{0, 20 * time.Millisecond} {
		b.Run(fmt.Sprintf("latency=%s", latency), func(b *testing.B) {
			cache.StallBody(latency)
			bfsCache.StallBody(latency)
			nixStore := func(extra ...string) func() sample {
				return func() sample {
					node := testnode.NewNode(b, testnode.NodeOptions{Substituters: []string{cache.URL}, TrustedPublicKeys: []string{cache.PublicKey}})
					defer node.Discard(b)
					return timed(b, node.Command("nix-store", append([]string{"-r", fx.Root}, extra...)...))
				}
			}
			nixInitRun := func(c *testnode.Cache, conf string, extra ...string) func() sample {
				return func() sample {
					node := testnode.NewNode(b, testnode.NodeOptions{ExtraConf: conf})
					defer node.Discard(b)
					report := filepath.Join(b.TempDir(), "report.json")
					args := append([]string{"--store", node.StoreURI(), "--substituter", c.URL,
						"--trusted-public-key", c.PublicKey, "--gc-root-dir", filepath.Join(node.Dir, "gc"),
						"--report", report}, extra...)
					s := timed(b, node.Command(bin, append(args, "app="+fx.Root)...))
					s.maxRSS = reportedRSS(b, report, s.maxRSS)
					return s
				}
			}
			variants := []struct {
				name string
				run  func() sample
			}{
				{"nix-init", nixInitRun(cache, "")},
				{"nix-init-tuned", nixInitRun(cache, "http-connections = 64", "--jobs", "64")},
				{"nix-init-bfs", nixInitRun(bfsCache, "")},
				{"nix-init-import", nixInitRun(cache, "", "--unpack=false")},
				{"nix-store-tuned", nixStore("--option", "max-jobs", "64", "--option", "http-connections", "64")},
				{"nix-store-default", nixStore()},
			}
			times := map[string][]time.Duration{}
			var peak int64
			for i := 0; i < b.N; i++ {
				for _, v := range variants {
					s := v.run()
					times[v.name] = append(times[v.name], s.wall)
					if strings.HasPrefix(v.name, "nix-init") {
						peak = max(peak, s.maxRSS)
					}
				}
			}
			ours, tuned := median(times["nix-init"]), median(times["nix-init-tuned"])
			for _, v := range variants {
				m := median(times[v.name])
				b.ReportMetric(m.Seconds(), v.name+"-s")
				if strings.HasPrefix(v.name, "nix-store") {
					b.ReportMetric(float64(m)/float64(ours), "x-vs-"+v.name)
					b.ReportMetric(float64(m)/float64(tuned), "tuned-x-vs-"+v.name)
				}
			}
			b.ReportMetric(float64(peak), "nix-init-maxrss-KiB")
			b.ReportMetric(0, "ns/op")
		})
	}

	// 32 nix-init processes at once on one node, through its daemon, for
	// the same closure, against one alone on a fresh node.
	b.Run("concurrent=32", func(b *testing.B) {
		cache.StallBody(0)
		var one, all []time.Duration
		for i := 0; i < b.N; i++ {
			one = append(one, concurrentRun(b, bin, cache, fx.Root, 1))
			all = append(all, concurrentRun(b, bin, cache, fx.Root, 32))
		}
		b.ReportMetric(median(one).Seconds(), "one-s")
		b.ReportMetric(median(all).Seconds(), "32-at-once-s")
		b.ReportMetric(float64(median(all))/float64(median(one)), "ratio")
		b.ReportMetric(0, "ns/op")
	})
}

// pushedCache serves a cache holding root's closure, written by our
// uploader; without indexes it looks like one `nix copy` wrote.
func pushedCache(b testing.TB, root string, indexes bool) *testnode.Cache {
	b.Helper()
	cache := testnode.NewCache(b, testnode.CacheOptions{})
	key, err := binarycache.LoadSecretKey(cache.SecretKeyFile)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	src, err := store.Open(ctx, "local")
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	up, err := binarycache.NewUploader(ctx, cache.FileURL(), key, binarycache.UploadOptions{Parallel: 4})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := up.Upload(ctx, src, []string{root}); err != nil {
		b.Fatal(err)
	}
	if !indexes {
		matches, _ := filepath.Glob(filepath.Join(cache.Dir, "*"+binarycache.ClosureIndexSuffix))
		for _, m := range matches {
			os.Remove(m)
		}
	}
	return cache
}

// concurrentRun starts n nix-init processes at once, each in its own
// sandbox as nobody, on one fresh node with a daemon, and returns the time
// until the last one exited.
func concurrentRun(b *testing.B, bin string, cache *testnode.Cache, root string, n int) time.Duration {
	b.Helper()
	// The socket where Nix puts it, as on a real node: nix-init then knows
	// the state directory and probes the GC's socket instead of asking the
	// daemon to wait for the GC lock (which 32 runs would take in turn).
	node := testnode.NewNode(b, testnode.NodeOptions{Substituters: []string{cache.URL}, TrustedPublicKeys: []string{cache.PublicKey}, SocketInStateDir: true})
	node.StartDaemon(b)
	defer node.Discard(b)
	var cmds []*exec.Cmd
	for i := 0; i < n; i++ {
		sb := testnode.NewSandbox(b, node)
		cmds = append(cmds, sb.Command(sb.CopyExecutable(b, bin), "--substituter", cache.URL, "app="+root))
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, n)
	outs := make([][]byte, n)
	for i, c := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = c.CombinedOutput()
		}()
	}
	wg.Wait()
	d := time.Since(start)
	for i, err := range errs {
		if err != nil {
			b.Fatalf("nix-init %d of %d: %v\n%s", i+1, n, err, outs[i])
		}
	}
	return d
}

// reportedRSS is nix-init's own peak RSS from its report (the rusage of a
// child forked from the benchmark counts the benchmark's pages too).
func reportedRSS(b testing.TB, file string, fallback int64) int64 {
	data, err := os.ReadFile(file)
	if err != nil {
		b.Fatal(err)
	}
	var r struct {
		PeakRSSKiB int64 `json:"peak_rss_kib"`
	}
	if err := json.Unmarshal(data, &r); err != nil || r.PeakRSSKiB == 0 {
		return fallback
	}
	return r.PeakRSSKiB
}

func envInt(name string, def int) int {
	var v int
	if _, err := fmt.Sscan(os.Getenv(name), &v); err == nil && v > 0 {
		return v
	}
	return def
}
