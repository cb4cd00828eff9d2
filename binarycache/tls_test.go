package binarycache

import (
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/internal/testca"
)

// newTLSServer is newServer over https on 127.0.0.1 with a certificate
// signed by ca; hellos counts the TLS handshakes begun.
func newTLSServer(t testing.TB, dir string, ca *testca.CA) (s *testServer, hellos *atomic.Int32) {
	t.Helper()
	s = &testServer{dir: dir, counts: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cert := ca.ServerCert(t)
	hellos = new(atomic.Int32)
	s.Server = &httptest.Server{
		Listener: ln,
		// A refused handshake is what the tests provoke: not worth a log line.
		Config: &http.Server{Handler: s, ErrorLog: log.New(io.Discard, "", 0)},
		TLS: &tls.Config{
			Certificates: []tls.Certificate{cert},
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				hellos.Add(1)
				return nil, nil
			},
		},
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s, hellos
}

// cacheInfoDir is a cache with only its nix-cache-info.
func cacheInfoDir(t testing.TB) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "nix-cache-info"), []byte("StoreDir: /nix/store\nPriority: 30\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func tlsOpts(t testing.TB, file string) Options {
	t.Helper()
	ca, err := LoadCA(file, "/etc/nix/nix.conf:3")
	if err != nil {
		t.Fatal(err)
	}
	opts := fastOpts()
	opts.HTTPClient = nil // made for the CA by Open
	opts.ConnectTimeout = 2 * time.Second
	opts.CA = ca
	return opts
}

// An https cache whose certificate the CA signed opens; with another CA,
// or the system's roots, the error names the cache, the bundle and the
// setting, after one handshake (no retries).
func TestTLSCacheOpen(t *testing.T) {
	t.Parallel()
	good, other := testca.New(t, "", "internal-ca"), testca.New(t, "", "other-ca")
	srv, hellos := newTLSServer(t, cacheInfoDir(t), good)

	c, err := Open(ctxT(t), srv.URL, tlsOpts(t, good.File))
	if err != nil {
		t.Fatalf("open over https with the cache's CA: %v", err)
	}
	if c.Priority() != 30 {
		t.Errorf("priority %d, want 30 (nix-cache-info read)", c.Priority())
	}

	hellos.Store(0)
	_, err = Open(ctxT(t), srv.URL, tlsOpts(t, other.File))
	var ve *tls.CertificateVerificationError
	if !errors.As(err, &ve) {
		t.Fatalf("open with a CA that did not sign the server's certificate: %v, want a certificate verification error", err)
	}
	for _, want := range []string{srv.URL, "ssl-cert-file " + other.File + " (/etc/nix/nix.conf:3)", "x509:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if IsTransient(err) {
		t.Errorf("a refused certificate is transient: %v", err)
	}
	if n := hellos.Load(); n != 1 {
		t.Errorf("%d handshakes, want 1 (a refused certificate is not retried)", n)
	}

	opts := fastOpts()
	_, err = Open(ctxT(t), srv.URL, opts)
	if err == nil || !strings.Contains(err.Error(), "system's CA certificates") || !strings.Contains(err.Error(), "set ssl-cert-file") {
		t.Errorf("open with the system's roots: %v, want a hint at ssl-cert-file", err)
	}
}

// LoadCA's errors name the setting, the file and where the setting came
// from.
func TestLoadCA(t *testing.T) {
	t.Parallel()
	d := t.TempDir()
	good := testca.New(t, "", "ca")
	pemOf := func(typ string, b []byte) string { return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b})) }
	goodPEM, err := os.ReadFile(good.File)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"empty.pem":    "",
		"text.pem":     "this is not PEM\n",
		"der.crt":      string(good.DER()),
		"key-only.pem": pemOf("PRIVATE KEY", []byte("x")),
		"garbage.pem":  pemOf("CERTIFICATE", []byte("not DER")),
		"bundle.pem":   "# a comment\n" + pemOf("CERTIFICATE", []byte("not DER")) + string(goodPEM) + pemOf("X509 CRL", []byte("x")),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(d, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		file string
		want string // in the error; "" for success
	}{
		{"missing.pem", "no such file"},
		{".", "not a regular file"},
		{"empty.pem", "no certificates in it"},
		{"text.pem", "no certificates in it"},
		{"der.crt", "no certificates in it"},
		{"key-only.pem", "no certificates in it"},
		{"garbage.pem", "none of its 1 certificates parses"},
		{"bundle.pem", ""},
	} {
		file := filepath.Join(d, tt.file)
		ca, err := LoadCA(file, "NIX_SSL_CERT_FILE")
		if tt.want == "" {
			if err != nil || ca.Certs != 1 {
				t.Errorf("%s: %v, %+v; want one certificate", tt.file, err, ca)
			}
			continue
		}
		prefix := "ssl-cert-file " + file + " (NIX_SSL_CERT_FILE): "
		if err == nil || !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v; want %q…%q", tt.file, err, prefix, tt.want)
		}
		if strings.Count(err.Error(), file) != 1 {
			t.Errorf("%s: the error names the file more than once: %v", tt.file, err)
		}
	}
	if _, err := LoadCA(filepath.Join(d, "missing.pem"), "x"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
	if ca, err := LoadCA("", "default"); ca != nil || err != nil {
		t.Errorf(`LoadCA("") = %v, %v; want nil, nil (the system's roots)`, ca, err)
	}
}

// A closure is fetched and verified from an https cache with an internal
// CA, and uploaded to one.
func TestTLSFetchAndUpload(t *testing.T) {
	f := getFixture(t)
	ca := testca.New(t, "", "internal-ca")
	ctx := ctxT(t)

	srv, _ := newTLSServer(t, f.Caches["zstd"], ca)
	opts := tlsOpts(t, ca.File)
	opts.TrustedKeys = []PublicKey{f.PublicKey}
	c, err := Open(ctx, srv.URL, opts)
	if err != nil {
		t.Fatal(err)
	}
	ni, err := c.NarInfo(ctx, f.Dep)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.OpenNar(ctx, ni)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, r)
	r.Close()
	if err != nil || uint64(n) != ni.NarSize {
		t.Fatalf("NAR over https: %d bytes, %v; want %d", n, err, ni.NarSize)
	}

	dir := t.TempDir()
	up, _ := newTLSServer(t, dir, ca)
	up.allowPut = true
	u, err := NewUploader(ctx, up.URL, f.SecretKey, UploadOptions{Options: tlsOpts(t, ca.File)})
	if err != nil {
		t.Fatal(err)
	}
	res, err := u.Upload(ctx, spawnStore(t), []string{f.App})
	if err != nil {
		t.Fatalf("upload over https: %v", err)
	}
	if len(res.Uploaded) != len(f.Closure) {
		t.Errorf("uploaded %v, want the closure %v", res.Uploaded, f.Closure)
	}
	if _, err := os.Stat(narinfoFile(dir, f.App)); err != nil {
		t.Errorf("the cache has no narinfo for the root: %v", err)
	}
}
