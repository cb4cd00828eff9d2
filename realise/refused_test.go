package realise

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/internal/testnode"
)

// endlessCache is an HTTP server on 127.0.0.1 whose nix-cache-info never
// ends (it stops at a cap, so that a client that buffers it all, as the
// daemon does, cannot take the test machine down). It records who asked.
type endlessCache struct {
	URL string

	mu     sync.Mutex
	agents []string // User-Agent of each request
	sent   []int64  // bytes sent to each
}

// endlessCap bounds what one request is sent: far beyond any size
// nix-init accepts for nix-cache-info, so that reaching it means a
// client buffered it.
const endlessCap = 64 << 20

func newEndlessCache(t *testing.T) *endlessCache {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &endlessCache{URL: "http://" + ln.Addr().String()}
	line := []byte("X-Padding: " + strings.Repeat("x", 1000) + "\n")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		i := len(c.agents)
		c.agents = append(c.agents, r.UserAgent())
		c.sent = append(c.sent, 0)
		c.mu.Unlock()
		if r.URL.Path != "/nix-cache-info" {
			http.NotFound(w, r)
			return
		}
		n, _ := w.Write([]byte("StoreDir: /nix/store\n"))
		total := int64(n)
		for total < endlessCap {
			n, err := w.Write(line)
			total += int64(n)
			if err != nil {
				break
			}
		}
		c.mu.Lock()
		c.sent[i] = total
		c.mu.Unlock()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return c
}

// requests returns the User-Agents of the requests so far and the most
// bytes any of them was sent.
func (c *endlessCache) requests() ([]string, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var most int64
	for _, n := range c.sent {
		most = max(most, n)
	}
	return append([]string(nil), c.agents...), most
}

// TestDirectNoFallbackAfterBadContent: a reachable cache that sends an
// endless nix-cache-info is refused, and the run fails naming it: the
// daemon (whose own substituters name the same cache) is not asked to
// substitute instead, alone or beside a cache nix-init cannot speak to or
// one that lacks the path.
func TestDirectNoFallbackAfterBadContent(t *testing.T) {
	t.Parallel()
	fx := testnode.Chain(t, "no-fallback", 1, 1, 1024)
	empty := testnode.NewCache(t, testnode.CacheOptions{})
	app := Root{Name: "app", Path: fx.Root}
	const s3 = "s3://nix-aurora-no-such-bucket"
	for _, tc := range []struct {
		name string
		urls func(endless string) []string
	}{
		{"alone", func(e string) []string { return []string{e} }},
		{"with an unsupported store", func(e string) []string { return []string{s3, e} }},
		{"with a cache lacking the path", func(e string) []string { return []string{empty.URL, e} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			endless := newEndlessCache(t)
			w := newDaemonWorld(t, testnode.NodeOptions{
				Substituters:      []string{endless.URL},
				TrustedPublicKeys: []string{empty.PublicKey},
			})
			d := &Direct{URLs: tc.urls(endless.URL), Options: cacheOptions(t, empty.PublicKey), Fallback: Daemon{}}
			start := time.Now()
			rep, err := w.realise(t, d, 20*time.Second, app)
			if err == nil || Transient(err) {
				t.Fatalf("err = %v", err)
			}
			if msg := err.Error(); !strings.Contains(msg, endless.URL) || !strings.Contains(msg, "nix-cache-info is larger than") {
				t.Errorf("the error does not say which cache sent what: %v", err)
			}
			if rep.Retries != 0 {
				t.Errorf("%d retries of a permanent failure", rep.Retries)
			}
			if w.log.has("letting the daemon substitute") {
				t.Errorf("fell back to the daemon")
			}
			agents, most := endless.requests()
			for _, a := range agents {
				if strings.Contains(a, "Nix/") {
					t.Errorf("the daemon asked the cache (User-Agent %q)", a)
				}
			}
			if most >= endlessCap {
				t.Errorf("a client read all of the endless nix-cache-info (%d bytes)", most)
			}
			if el := time.Since(start); el > 15*time.Second {
				t.Errorf("took %s", el)
			}
			if v := w.node.ValidPaths(t); len(v) != 0 {
				t.Errorf("valid: %v", v)
			}
		})
	}
}
