package main

import (
	"net"
	"net/http"
	"strings"
	"sync"
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
	endless, agents := serveEndlessCacheInfo(t)
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
	for _, a := range agents() {
		if strings.Contains(a, "Nix/") {
			t.Errorf("the daemon asked the cache (User-Agent %q)", a)
		}
	}
	rep := r.readReport(t, "report.json")
	if rep.PeakRSSKiB <= 0 || rep.PeakRSSKiB > 32<<10 {
		t.Errorf("peak RSS %d KiB, want within 32 MiB", rep.PeakRSSKiB)
	}
}

// serveEndlessCacheInfo serves, on 127.0.0.1, a nix-cache-info that goes
// on for 64 MiB (far beyond what nix-init reads; the cap keeps a client
// that buffers it all from taking the machine down) and 404 for anything
// else. It returns the URL and a function listing the User-Agent of every
// request so far.
func serveEndlessCacheInfo(t *testing.T) (string, func() []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var agents []string
	line := []byte("X-Padding: " + strings.Repeat("x", 1000) + "\n")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		agents = append(agents, r.UserAgent())
		mu.Unlock()
		if r.URL.Path != "/nix-cache-info" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("StoreDir: /nix/store\n"))
		for sent := 0; sent < 64<<20; sent += len(line) {
			if _, err := w.Write(line); err != nil {
				return
			}
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), agents...)
	}
}
