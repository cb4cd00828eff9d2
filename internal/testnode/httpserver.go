package testnode

import (
	"net"
	"net/http"
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
