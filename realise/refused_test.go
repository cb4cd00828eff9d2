package realise

import (
	"strings"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/internal/testnode"
)

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
			endless := testnode.NewEndlessCacheInfo(t)
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
			agents, most := endless.Requests()
			for _, a := range agents {
				if strings.Contains(a, "Nix/") {
					t.Errorf("the daemon asked the cache (User-Agent %q)", a)
				}
			}
			if most >= testnode.EndlessCacheInfoCap {
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
