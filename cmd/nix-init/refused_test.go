package main

import (
	"strings"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/internal/testnix"
	"github.com/nix-aurora/nix-aurora/internal/testnode"
)

// TestEndlessCacheInfoNoFallback: a reachable cache whose nix-cache-info
// never ends is refused with a message that names it and says what it
// sent; nix-init does not let the daemon (whose own nix.conf names the
// same cache) substitute instead, and its memory stays bounded.
func TestEndlessCacheInfoNoFallback(t *testing.T) {
	t.Parallel()
	cache := testnode.NewEndlessCacheInfo(t)
	endless := cache.URL
	testnix.Require(t)
	testnix.RequireRoot(t)
	r := &rig{fx: testnode.Chain(t, "endless-cache-info", 1, 1, 1024)}
	r.cache = testnode.NewCache(t, testnode.CacheOptions{}) // for its key only
	r.node = testnode.NewNode(t, testnode.NodeOptions{
		Substituters:        []string{endless},
		TrustedSubstituters: []string{endless},
		TrustedPublicKeys:   []string{r.cache.PublicKey},
	})
	r.node.StartDaemon(t)
	r.sb = testnode.NewSandbox(t, r.node)
	r.bin = r.sb.CopyExecutable(t, nixInitBinary(t))
	res := runInit(t, r.cmd("--via", "direct", "--substituter", endless, "--trusted-public-key", r.cache.PublicKey,
		"--report", "report.json", "app="+r.fx.Root), 30*time.Second)
	wantCode(t, res, exitPermanent)
	if !strings.Contains(res.stderr, endless) || !strings.Contains(res.stderr, "nix-cache-info is larger than") {
		t.Errorf("the error does not name the cache and what it sent")
	}
	if strings.Contains(res.stderr, "letting the daemon substitute") {
		t.Errorf("fell back to the daemon")
	}
	agents, _ := cache.Requests()
	for _, a := range agents {
		if strings.Contains(a, "Nix/") {
			t.Errorf("the daemon asked the cache (User-Agent %q)", a)
		}
	}
	rep := r.readReport(t, "report.json")
	if rep.PeakRSSKiB <= 0 || rep.PeakRSSKiB > 32<<10 {
		t.Errorf("peak RSS %d KiB, want within 32 MiB", rep.PeakRSSKiB)
	}
}
