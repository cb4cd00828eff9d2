package main

import (
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/internal/testca"
	"github.com/nix-aurora/nix-aurora/internal/testnix"
	"github.com/nix-aurora/nix-aurora/internal/testnode"
)

// TestTLSInternalCA realises a closure from an https cache whose
// certificate an internal CA signed, the CA named by ssl-cert-file in
// nix.conf, NIX_SSL_CERT_FILE or SSL_CERT_FILE (in Nix's precedence), and
// checks that a missing bundle, one that is not PEM, and a CA that did not
// sign the server's certificate fail at once, naming the setting and the
// file.
func TestTLSInternalCA(t *testing.T) {
	t.Parallel()
	testnix.Require(t)
	testnix.RequireRoot(t)
	fx := testnode.Chain(t, "tls-ca", 2, 2, 4096)
	cache := testnode.NewCache(t, testnode.CacheOptions{}, fx.Root)

	// The bundles, where nobody can read them.
	caDir, err := os.MkdirTemp("", "nix-init-ca-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(caDir) })
	if err := os.Chmod(caDir, 0o755); err != nil {
		t.Fatal(err)
	}
	internal := testca.New(t, caDir, "internal-ca")
	good, cert := internal.File, internal.ServerCert(t)
	other := testca.New(t, caDir, "other-ca").File
	notPEM := filepath.Join(caDir, "not-pem.crt")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(caDir, "missing.pem")

	srv := httptest.NewUnstartedServer(http.FileServer(http.Dir(cache.Dir)))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	srv.StartTLS()
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.URL, "https://127.0.0.1:") {
		t.Fatalf("server at %s", srv.URL)
	}

	run := func(t *testing.T, conf string, env ...string) (*testnode.Node, result) {
		t.Helper()
		node := testnode.NewNode(t, testnode.NodeOptions{
			Substituters:      []string{srv.URL},
			TrustedPublicKeys: []string{cache.PublicKey},
			ExtraConf:         conf,
		})
		node.StartDaemon(t)
		sb := testnode.NewSandbox(t, node)
		bin := sb.CopyExecutable(t, nixInitBinary(t))
		cmd := sb.Command(bin, "--via", "direct", "--timeout", "30s", "app="+fx.Root)
		cmd.Env = append(cmd.Env, env...)
		return node, runInit(t, cmd, 60*time.Second)
	}
	confLine := func(node *testnode.Node) string {
		return filepath.Join(node.ConfDir, "nix.conf") + ":"
	}

	for _, tt := range []struct {
		name string
		conf string
		env  []string
	}{
		{"nix.conf", "ssl-cert-file = " + good, nil},
		{"NIX_SSL_CERT_FILE", "", []string{"NIX_SSL_CERT_FILE=" + good}},
		{"SSL_CERT_FILE", "", []string{"SSL_CERT_FILE=" + good}},
		{"nix.conf before the environment", "ssl-cert-file = " + good, []string{"NIX_SSL_CERT_FILE=" + other, "SSL_CERT_FILE=" + other}},
		{"NIX_SSL_CERT_FILE before SSL_CERT_FILE", "", []string{"NIX_SSL_CERT_FILE=" + good, "SSL_CERT_FILE=" + other}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			node, res := run(t, tt.conf, tt.env...)
			wantCode(t, res, exitOK)
			if bad := node.Invalid(t, fx.Closure...); len(bad) > 0 {
				t.Fatalf("not valid after nix-init: %v\n%s", bad, res.stderr)
			}
			if !strings.Contains(res.stderr, "from "+srv.URL) {
				t.Errorf("no path fetched from %s:\n%s", srv.URL, res.stderr)
			}
		})
	}

	for _, tt := range []struct {
		name string
		conf string
		env  []string
		want []string // in stderr; "@" is the node's nix.conf and ":"
	}{
		{"missing file", "ssl-cert-file = " + missing, nil,
			[]string{"ssl-cert-file " + missing + " (@", "no such file"}},
		{"not PEM", "", []string{"NIX_SSL_CERT_FILE=" + notPEM},
			[]string{"ssl-cert-file " + notPEM + " (NIX_SSL_CERT_FILE): no certificates in it"}},
		{"CA that did not sign the server's certificate", "ssl-cert-file = " + other, nil,
			[]string{srv.URL, "ssl-cert-file " + other + " (@", "certificate signed by unknown authority"}},
		{"NIX_SSL_CERT_FILE wins over SSL_CERT_FILE", "", []string{"NIX_SSL_CERT_FILE=" + other, "SSL_CERT_FILE=" + good},
			[]string{srv.URL, "ssl-cert-file " + other + " (NIX_SSL_CERT_FILE)"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			node, res := run(t, tt.conf, tt.env...)
			if res.code == exitOK {
				t.Fatalf("nix-init succeeded:\n%s", res.stderr)
			}
			for _, w := range tt.want {
				if w = strings.ReplaceAll(w, "@", confLine(node)); !strings.Contains(res.stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, res.stderr)
				}
			}
			if res.elapsed > 20*time.Second {
				t.Errorf("took %v: a bad CA must fail at once, not after retries", res.elapsed)
			}
			if valid := len(fx.Closure) - len(node.Invalid(t, fx.Closure...)); valid > 0 {
				t.Errorf("%d paths valid after a failed run", valid)
			}
		})
	}
}
