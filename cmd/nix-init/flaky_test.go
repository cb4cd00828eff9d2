package main

import (
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
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
	p := &flakyProxy{rng: rand.New(rand.NewPCG(1, 2)), share: share}
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
// (nix-cache-info, narinfos, NARs) is ridden out when the daemon
// substitutes: the run succeeds. Nix tries a download only once here
// (download-attempts), so that the failures reach nix-init, which must
// take them for transient whatever the Nix version says; the paths
// fetched stay valid from one attempt to the next.
func TestCache30Percent503(t *testing.T) {
	t.Parallel()
	r := newRig(t, "cache-30pc-503-daemon", rigOptions{})
	proxy := newFlakyProxy(t, r.cache.URL, 0.3)
	node := testnode.NewNode(t, testnode.NodeOptions{
		Substituters:      []string{proxy.URL},
		TrustedPublicKeys: []string{r.cache.PublicKey},
		ExtraConf:         "download-attempts = 1\n",
	})
	node.StartDaemon(t)
	sb := testnode.NewSandbox(t, node)
	r.node, r.sb = node, sb
	res := runInit(t, sb.Command(r.bin, "--via", "daemon", "--timeout", "60s", "--report", "report.json", "app="+r.fx.Root), 50*time.Second)
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
}
