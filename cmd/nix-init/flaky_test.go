package main

import (
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/internal/testnode"
)

// flakyProxy stands in front of a cache and answers 503 to a share of the
// requests, chosen at random, as an overloaded cache does.
type flakyProxy struct {
	*httptest.Server
	mu     sync.Mutex
	rng    *rand.Rand
	share  float64
	failed int
}

func newFlakyProxy(t *testing.T, cacheURL string, share float64) *flakyProxy {
	t.Helper()
	target, err := url.Parse(cacheURL)
	if err != nil {
		t.Fatal(err)
	}
	// A new draw each run, logged: a failure can be replayed with its seed.
	seed := rand.Uint64()
	if s := os.Getenv("FLAKY_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("FLAKY_SEED: %v", err)
		}
	}
	t.Logf("flaky proxy: %.0f%% of requests fail, seed %d (FLAKY_SEED replays it)", share*100, seed)
	p := &flakyProxy{rng: rand.New(rand.NewPCG(seed, 0)), share: share}
	rp := httputil.NewSingleHostReverseProxy(target)
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		fail := p.rng.Float64() < p.share
		if fail {
			p.failed++
		}
		p.mu.Unlock()
		if fail {
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *flakyProxy) failures() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

// TestCache30Percent503: a cache that answers 503 to 30% of all requests
// (nix-cache-info, narinfos, NARs) is ridden out in both modes: the run
// succeeds. Nix tries a download only once here (download-attempts), so
// that with --via daemon the failures reach nix-init, which must take them
// for transient whatever the Nix version says; the paths fetched stay
// valid from one attempt to the next.
func TestCache30Percent503(t *testing.T) {
	t.Parallel()
	eachVia(t, func(t *testing.T, via string) {
		r := newRig(t, "cache-30pc-503-"+via, rigOptions{})
		proxy := newFlakyProxy(t, r.cache.URL, 0.3)
		node := testnode.NewNode(t, testnode.NodeOptions{
			Substituters:      []string{proxy.URL},
			TrustedPublicKeys: []string{r.cache.PublicKey},
			ExtraConf:         "download-attempts = 1\n",
		})
		node.StartDaemon(t)
		sb := testnode.NewSandbox(t, node)
		r.node, r.sb = node, sb
		res := runInit(t, sb.Command(r.bin, "--via", via, "--timeout", "60s", "--report", "report.json", "app="+r.fx.Root), 50*time.Second)
		wantCode(t, res, exitOK)
		if rep := r.readReport(t, "report.json"); rep.Outcome != "ok" || rep.Retries < 1 {
			t.Errorf("report: outcome %q, %d retries; want ok after retries", rep.Outcome, rep.Retries)
		}
		if proxy.failures() == 0 {
			t.Errorf("the proxy failed no request")
		}
		if bad := node.Invalid(t, r.fx.Closure...); len(bad) > 0 {
			t.Errorf("not fetched: %v", bad)
		}
		t.Logf("%s: %d requests failed, done in %s", via, proxy.failures(), res.elapsed)
	})
}

// TestCache30Percent503SingleUser: the same in single-user mode, where
// nix-init unpacks into the store itself, each request tried once.
func TestCache30Percent503SingleUser(t *testing.T) {
	t.Parallel()
	r, args := singleUserRig(t, "cache-30pc-503-single")
	proxy := newFlakyProxy(t, r.cache.URL, 0.3)
	for i, a := range args {
		if a == r.cache.URL {
			args[i] = proxy.URL
		}
	}
	cmd := r.cmd(append(args, "--timeout", "60s", "--report", "report.json", "app="+r.fx.Root)...)
	cmd.Env = append(cmd.Env, "NIX_CONFIG=download-attempts = 1")
	res := runInit(t, cmd, 50*time.Second)
	wantCode(t, res, exitOK)
	if rep := r.readReport(t, "report.json"); rep.Outcome != "ok" || rep.Retries < 1 {
		t.Errorf("report: outcome %q, %d retries; want ok after retries", rep.Outcome, rep.Retries)
	}
	if proxy.failures() == 0 {
		t.Errorf("the proxy failed no request")
	}
	if bad := r.node.Invalid(t, r.fx.Closure...); len(bad) > 0 {
		t.Errorf("not fetched: %v", bad)
	}
	r.node.Verify(t)
	t.Logf("%d requests failed, done in %s", proxy.failures(), res.elapsed)
}
