package binarycache

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// Caches written by `nix copy` with every compression: the narinfos
// parse, their signatures verify (and are the ones we would make), and
// every NAR downloads, decompresses and verifies to the bytes of
// `nix-store --dump`.
func TestNixCopyCaches(t *testing.T) {
	f := getFixture(t)
	dumps := map[string][]byte{}
	for _, p := range f.Closure {
		dumps[p] = dumpPath(t, p)
	}
	for _, comp := range compressions {
		t.Run(comp, func(t *testing.T) {
			ctx := ctxT(t)
			c, err := Open(ctx, "file://"+f.Caches[comp], fastOpts(f.PublicKey))
			if err != nil {
				t.Fatal(err)
			}
			if c.Priority() != 0 || c.WantMassQuery() {
				t.Errorf("nix copy's nix-cache-info: priority %d, want-mass-query %v", c.Priority(), c.WantMassQuery())
			}
			for _, p := range f.Closure {
				ni, err := c.NarInfo(ctx, p)
				if err != nil {
					t.Fatal(err)
				}
				if ni.Compression != comp {
					t.Errorf("%s: Compression %q", p, ni.Compression)
				}
				if comp == "gzip" && !strings.HasSuffix(ni.URL, ".nar") {
					t.Errorf("gzip NAR URL %q", ni.URL)
				}
				// Ed25519 is deterministic: our signature is Nix's.
				mine := *ni
				mine.Sigs = nil
				Sign(&mine, f.SecretKey)
				if !slices.Equal(mine.Sigs, ni.Sigs) {
					t.Errorf("%s: our signature %q, Nix's %q", p, mine.Sigs, ni.Sigs)
				}
				// Our serialisation is Nix's.
				raw, _ := os.ReadFile(narinfoFile(f.Caches[comp], p))
				if ni.String() != string(raw) {
					t.Errorf("%s: String() differs from the file:\n%s\n---\n%s", p, ni, raw)
				}
				var buf bytes.Buffer
				n, err := c.Download(ctx, ni, &buf)
				if err != nil {
					t.Fatalf("%s: %v", p, err)
				}
				if n != int64(ni.NarSize) || !bytes.Equal(buf.Bytes(), dumps[p]) {
					t.Fatalf("%s: downloaded %d bytes, not nix-store --dump's %d", p, n, len(dumps[p]))
				}
			}
		})
	}
}

func TestVerifyFileHash(t *testing.T) {
	f := getFixture(t)
	ctx := ctxT(t)
	dir := copyDir(t, f.Caches["xz"])
	opts := fastOpts(f.PublicKey)
	opts.VerifyFileHash = true
	c, err := Open(ctx, "file://"+dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ni, err := c.NarInfo(ctx, f.Dep)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Download(ctx, ni, io.Discard); err != nil {
		t.Fatalf("good file: %v", err)
	}
	// FileHash is not signed: a wrong one fails only with VerifyFileHash.
	wrong := *ni
	wrong.FileHash = ni.NarHash
	if _, err := c.Download(ctx, &wrong, io.Discard); !errors.Is(err, ErrHashMismatch) {
		t.Errorf("wrong FileHash: %v", err)
	}
	wrong = *ni
	wrong.FileSize++
	if _, err := c.Download(ctx, &wrong, io.Discard); !errors.Is(err, ErrHashMismatch) {
		t.Errorf("wrong FileSize: %v", err)
	}
	opts.VerifyFileHash = false
	c2, _ := Open(ctx, "file://"+dir, opts)
	wrong.FileHash = ni.NarHash
	if _, err := c2.Download(ctx, &wrong, io.Discard); err != nil {
		t.Errorf("without VerifyFileHash, as in Nix, a wrong FileHash is ignored: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	f := getFixture(t)
	ctx := ctxT(t)
	empty := t.TempDir()
	if _, err := Open(ctx, "file://"+empty, fastOpts()); !errors.Is(err, ErrNotBinaryCache) {
		t.Errorf("empty dir: %v", err)
	}
	srv := newServer(t, empty)
	_, err := Open(ctx, srv.URL, fastOpts())
	if !errors.Is(err, ErrNotBinaryCache) || !strings.Contains(err.Error(), "does not appear to be a binary cache") {
		t.Errorf("HTTP 404: %v", err)
	}
	other := t.TempDir()
	os.WriteFile(other+"/nix-cache-info", []byte("StoreDir: /gnu/store\n"), 0o644)
	if _, err := Open(ctx, "file://"+other, fastOpts()); err == nil || !strings.Contains(err.Error(), "/gnu/store") {
		t.Errorf("other store dir: %v", err)
	}
	for _, u := range []string{"ftp://x", "file://relative/path", "http://", "s3://bucket", "file://" + f.Caches["xz"] + "?priority=abc"} {
		if _, err := Open(ctx, u, fastOpts()); err == nil {
			t.Errorf("Open(%q) accepted", u)
		}
	}
}

func TestFileCacheRefusesEscapes(t *testing.T) {
	f := getFixture(t)
	ctx := ctxT(t)
	c, err := Open(ctx, "file://"+f.Caches["none"], fastOpts(f.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	ni, err := c.NarInfo(ctx, f.Dep)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"../../../../etc/passwd", "/etc/passwd", "nar/../../x", "nar//x"} {
		bad := *ni
		bad.URL = u
		if _, err := c.Download(ctx, &bad, io.Discard); err == nil {
			t.Errorf("URL %q accepted", u)
		}
	}
}

// The uploader's caches are consumed by real Nix: nix-store -r into a
// fresh chroot store from file:// and from HTTP, then a clean
// --verify --check-contents.
func TestUploaderConsumedByNix(t *testing.T) {
	f := getFixture(t)
	ctx := ctxT(t)
	src := spawnStore(t)
	key := f.SecretKey

	fileDir := t.TempDir()
	up, err := NewUploader(ctx, "file://"+fileDir, key, UploadOptions{Options: fastOpts()})
	if err != nil {
		t.Fatal(err)
	}
	res, err := up.Upload(ctx, src, []string{f.App})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Uploaded) != len(f.Closure) || len(res.Indexes) != 1 {
		t.Fatalf("result %+v", res)
	}
	info, _ := os.ReadFile(fileDir + "/nix-cache-info")
	if string(info) != "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n" {
		t.Errorf("nix-cache-info = %q", info)
	}
	substituteWithNix(t, "file://"+fileDir, f)

	httpDir := t.TempDir()
	srv := newServer(t, httpDir)
	srv.allowPut = true
	up, err = NewUploader(ctx, srv.URL, key, UploadOptions{Options: fastOpts()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.Upload(ctx, src, []string{f.App}); err != nil {
		t.Fatal(err)
	}
	puts := srv.count("PUT ")
	if want := 2*len(f.Closure) + 2; puts != want { // NAR + narinfo each, nix-cache-info, closure index
		t.Errorf("%d PUTs, want %d: %q", puts, want, srv.requests())
	}
	substituteWithNix(t, srv.URL, f)
}

func substituteWithNix(t *testing.T, cacheURL string, f *fixture) {
	t.Helper()
	pk, _ := os.ReadFile(f.PK)
	storeDir := t.TempDir()
	env := nixEnv(t)
	runNix(t, env, "nix-store", "--store", storeDir, "-r", f.App,
		"--option", "substituters", cacheURL,
		"--option", "trusted-public-keys", string(pk),
		"--option", "narinfo-cache-negative-ttl", "0")
	runNix(t, env, "nix-store", "--store", storeDir, "--verify", "--check-contents")
	got := strings.Fields(runNix(t, env, "nix-store", "--store", storeDir, "-qR", f.App))
	slices.Sort(got)
	want := slices.Clone(f.Closure)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("closure in the node store %q, want %q", got, want)
	}
	cmd := exec.Command("nix-store", "--store", storeDir, "--verify-path", f.App)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("verify-path: %v %s", err, out)
	}
}
