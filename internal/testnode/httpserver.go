package testnode

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// ServeHTTP serves h on 127.0.0.1 until the test ends and returns its
// URL (http://host:port, no trailing slash). It is for tests that need a
// cache no Cache can be: one whose bodies are generated as they are sent,
// endless or huge, so that they are never stored.
func ServeHTTP(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		wg.Wait() // Serve has returned: nothing of it outlives the test
	})
	return "http://" + ln.Addr().String()
}

// EndlessCacheInfo is a cache on 127.0.0.1 whose nix-cache-info never
// ends, and which answers 404 to anything else: for tests that check that
// such a cache is refused rather than read to its end, by nix-init or by
// the daemon it might fall back to. It records who asked.
type EndlessCacheInfo struct {
	URL string

	mu     sync.Mutex
	agents []string // User-Agent of each request
	sent   []int64  // bytes of nix-cache-info sent to each
}

// EndlessCacheInfoCap bounds what one request is sent: far beyond any size
// nix-init accepts for nix-cache-info, so that reaching it means a client
// buffered it; and finite, so that a client that buffers it all (as the
// daemon does) cannot take the test machine down.
const EndlessCacheInfoCap = 64 << 20

// NewEndlessCacheInfo starts an EndlessCacheInfo that serves until the
// test ends.
func NewEndlessCacheInfo(t testing.TB) *EndlessCacheInfo {
	t.Helper()
	c := &EndlessCacheInfo{}
	line := []byte("X-Padding: " + strings.Repeat("x", 1000) + "\n")
	c.URL = ServeHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
		for total < EndlessCacheInfoCap {
			n, err := w.Write(line)
			total += int64(n)
			if err != nil {
				break
			}
		}
		c.mu.Lock()
		c.sent[i] = total
		c.mu.Unlock()
	}))
	return c
}

// Requests returns the User-Agents of the requests so far and the most
// bytes any of them was sent (of a request still being answered: 0).
func (c *EndlessCacheInfo) Requests() (agents []string, most int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.sent {
		most = max(most, n)
	}
	return append([]string(nil), c.agents...), most
}
