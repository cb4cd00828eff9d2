package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/aurora"
	"github.com/nix-aurora/nix-aurora/binarycache"
	"github.com/nix-aurora/nix-aurora/internal/testca"
	"github.com/nix-aurora/nix-aurora/internal/testnix"
	"github.com/nix-aurora/nix-aurora/internal/testnode"
	"github.com/nix-aurora/nix-aurora/nixconf"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// pushKey makes a fresh signing key with nix-store and returns the secret
// key file and the public key.
func pushKey(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	var b [4]byte
	rand.Read(b[:])
	name := "nxa-push-" + hex.EncodeToString(b[:]) + "-1"
	sk, pk := filepath.Join(dir, "sk"), filepath.Join(dir, "pk")
	if out, err := exec.Command("nix-store", "--generate-binary-cache-key", name, sk, pk).CombinedOutput(); err != nil {
		t.Fatalf("generate key: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(pk)
	if err != nil {
		t.Fatal(err)
	}
	return sk, strings.TrimSpace(string(pub))
}

// cacheDir is a new, empty directory for a file:// cache, with a short
// plain name.
func cacheDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "nxa-push-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// builtJob builds examples/hello_world with a link to its JSON and returns
// the link, the JSON's store path, its roots and their closure.
func builtJob(t *testing.T) (link, jsonPath string, roots, closure []string) {
	t.Helper()
	link = filepath.Join(t.TempDir(), "result")
	code, out, errOut := runCLI(t, "build", filepath.Join(repoRoot(t), "examples", "hello_world"), "-o", link)
	if code != exitOK {
		t.Fatalf("build: exit %d\n%s", code, errOut)
	}
	jsonPath = strings.TrimSpace(out)
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := aurora.ParseDocument(data)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := jobRoots(jsonPath, doc.Jobs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		roots = append(roots, r.path)
	}
	if len(roots) == 0 {
		t.Fatal("the job has no roots")
	}
	set := map[string]bool{}
	for _, r := range roots {
		for p := range closureOf(t, r) {
			set[p] = true
		}
	}
	for p := range set {
		closure = append(closure, p)
	}
	slices.Sort(closure)
	return link, jsonPath, roots, closure
}

// cachedPaths lists the store paths the cache directory has narinfos for.
func cachedPaths(t *testing.T, dir string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.narinfo"))
	var paths []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ni, err := binarycache.ParseNarInfo(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		paths = append(paths, ni.StorePath)
	}
	slices.Sort(paths)
	return paths
}

// snapshot is every file of a directory with its size and modification time.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if !d.IsDir() {
			fi, _ := d.Info()
			m[p] = fi.ModTime().String() + " " + fi.Mode().String()
		}
		return nil
	})
	return m
}

// checkIndexes reads each root's closure index back with binarycache,
// verified under pk, and plans the roots from it in one request each.
func checkIndexes(t *testing.T, cacheURL, pk string, roots, closure []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key, err := binarycache.ParsePublicKey(pk)
	if err != nil {
		t.Fatal(err)
	}
	c, err := binarycache.Open(ctx, cacheURL, binarycache.Options{TrustedKeys: []binarycache.PublicKey{key}})
	if err != nil {
		t.Fatal(err)
	}
	for _, root := range roots {
		infos, err := c.ClosureIndex(ctx, root)
		if err != nil {
			t.Fatalf("closure index of %s: %v", root, err)
		}
		var got []string
		for _, ni := range infos {
			got = append(got, ni.StorePath)
		}
		slices.Sort(got)
		want := slices.Sorted(func(yield func(string) bool) {
			for p := range closureOf(t, root) {
				if !yield(p) {
					return
				}
			}
		})
		if !slices.Equal(got, want) {
			t.Errorf("closure index of %s lists %q, want %q", root, got, want)
		}
	}
	plan, err := binarycache.Caches{c}.Plan(ctx, roots, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := slices.Sorted(slices.Values(roots)); !slices.Equal(plan.IndexedRoots, want) {
		t.Errorf("planned from indexes: %q, want %q", plan.IndexedRoots, want)
	}
	if len(plan.Paths) != len(closure) {
		t.Errorf("plan has %d paths, want %d", len(plan.Paths), len(closure))
	}
}

// substitute makes a fresh node (its own chroot store and cold narinfo
// cache) fetch every root from the cache with Nix 2.8, then checks the
// store's contents.
func substitute(t *testing.T, cacheURL, pk string, roots, closure []string, extra ...string) {
	t.Helper()
	node := testnode.NewNode(t, testnode.NodeOptions{})
	for _, root := range roots {
		node.NixStore(t, append([]string{"-r", root,
			"--option", "substituters", cacheURL,
			"--option", "trusted-public-keys", pk}, extra...)...)
	}
	if missing := node.Invalid(t, closure...); len(missing) > 0 {
		t.Errorf("not valid on the node after nix-store -r: %q", missing)
	}
	node.Verify(t)
}

func countLines(s, prefix string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// push builds the job, uploads its closures to a file:// cache that Nix
// 2.8 then substitutes from; a second push uploads nothing.
func TestPushFileCache(t *testing.T) {
	testnix.Require(t)
	sk, pk := pushKey(t)
	dir := cacheDir(t)
	_, jsonPath, roots, closure := builtJob(t)

	code, _, errOut := runCLI(t, "push", "--to", "file://"+dir, "--secret-key", sk, "--jobs", "2",
		filepath.Join(repoRoot(t), "examples", "hello_world"))
	if code != exitOK {
		t.Fatalf("push: exit %d\n%s", code, errOut)
	}
	if got := cachedPaths(t, dir); !slices.Equal(got, closure) {
		t.Errorf("cache has %q\nwant the roots' closure %q", got, closure)
	}
	if slices.Contains(cachedPaths(t, dir), jsonPath) {
		t.Errorf("the job JSON itself was pushed")
	}
	if n := countLines(errOut, "uploaded /nix/store/"); n != len(closure) {
		t.Errorf("%d 'uploaded' lines, want %d:\n%s", n, len(closure), errOut)
	}
	if !strings.Contains(errOut, fmt.Sprintf("pushed 1 root to file://%s: %d uploaded (", dir, len(closure))) || !strings.Contains(errOut, "1 closure index written") {
		t.Errorf("summary:\n%s", errOut)
	}
	if nars, _ := filepath.Glob(filepath.Join(dir, "nar", "*.nar.zst")); len(nars) != len(closure) {
		t.Errorf("%d zstd NARs, want %d", len(nars), len(closure))
	}
	info, _ := os.ReadFile(filepath.Join(dir, "nix-cache-info"))
	if !strings.Contains(string(info), "StoreDir: /nix/store") {
		t.Errorf("nix-cache-info %q", info)
	}

	substitute(t, "file://"+dir, pk, roots, closure)
	checkIndexes(t, "file://"+dir, pk, roots, closure)

	// Again: nothing is written, not even the closure index.
	before := snapshot(t, dir)
	code, _, errOut = runCLI(t, "push", "--to", "file://"+dir, "--secret-key", sk, filepath.Join(repoRoot(t), "examples", "hello_world"))
	if code != exitOK {
		t.Fatalf("second push: exit %d\n%s", code, errOut)
	}
	if n := countLines(errOut, "uploaded "); n != 0 || !strings.Contains(errOut, fmt.Sprintf(": 0 uploaded, %d already there, 0 closure indexes written (1 unchanged)", len(closure))) {
		t.Errorf("second push:\n%s", errOut)
	}
	if after := snapshot(t, dir); !maps(before, after) {
		t.Errorf("the second push changed the cache:\nbefore %v\nafter  %v", before, after)
	}
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// push over HTTP (PUT, as Nix's HTTP binary cache store writes), with
// netrc credentials; Nix 2.8 substitutes from the same URL; a second push
// PUTs nothing.
func TestPushHTTPCache(t *testing.T) {
	testnix.Require(t)
	sk, pk := pushKey(t)
	link, _, roots, closure := builtJob(t)
	cache := testnode.NewCache(t, testnode.CacheOptions{Writable: true})

	// Writes need credentials; reads do not, so that Nix needs no netrc.
	target, _ := url.Parse(cache.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			if u, p, ok := r.BasicAuth(); !ok || u != "pusher" || p != "s3cret" {
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	netrc := filepath.Join(t.TempDir(), "netrc")
	os.WriteFile(netrc, []byte("machine 127.0.0.1 login pusher password s3cret\n"), 0o600)

	puts := func() int {
		n := 0
		for _, r := range cache.Log() {
			if r.Method == http.MethodPut {
				n++
			}
		}
		return n
	}

	// Without credentials the first PUT fails, naming what and where.
	conf := os.Getenv("NIX_CONFIG")
	t.Setenv("NIX_CONFIG", conf+"\nnetrc-file = "+filepath.Join(t.TempDir(), "missing"))
	code, _, errOut := runCLI(t, "push", "--to", front.URL, "--secret-key", sk, link)
	if code != exitFailure || !strings.Contains(errOut, front.URL) || !strings.Contains(errOut, "401") {
		t.Fatalf("push without credentials: exit %d\n%s", code, errOut)
	}

	// Without --netrc, nix.conf's netrc-file has the credentials.
	t.Setenv("NIX_CONFIG", conf+"\nnetrc-file = "+netrc)
	code, _, errOut = runCLI(t, "push", "--to", front.URL, "--secret-key", sk, link)
	if code != exitOK {
		t.Fatalf("push: exit %d\n%s", code, errOut)
	}
	if got := cachedPaths(t, cache.Dir); !slices.Equal(got, closure) {
		t.Errorf("cache has %q\nwant %q", got, closure)
	}
	if n := puts(); n != 2*len(closure)+len(roots) { // NAR and narinfo each, an index per root
		t.Errorf("%d PUTs, want %d", n, 2*len(closure)+len(roots))
	}
	substitute(t, cache.URL, pk, roots, closure)
	checkIndexes(t, cache.URL, pk, roots, closure)

	n := puts()
	code, _, errOut = runCLI(t, "push", "--to", front.URL, "--secret-key", sk, "--netrc", netrc, link)
	if code != exitOK || !strings.Contains(errOut, fmt.Sprintf("0 uploaded, %d already there", len(closure))) {
		t.Fatalf("second push: exit %d\n%s", code, errOut)
	}
	if puts() != n {
		t.Errorf("the second push sent %d PUTs", puts()-n)
	}
}

// The arguments push takes: a JSON file (or a build's link to one), plain
// store paths (or paths inside them), several at once; the key from
// NIX_SECRET_KEY_FILE; --no-sign.
func TestPushArguments(t *testing.T) {
	testnix.Require(t)
	sk, pk := pushKey(t)
	link, jsonPath, roots, closure := builtJob(t)

	// The JSON's store path, and the link to it, with the key from the
	// environment.
	t.Setenv("NIX_SECRET_KEY_FILE", sk)
	for _, arg := range []string{jsonPath, link} {
		dir := cacheDir(t)
		code, _, errOut := runCLI(t, "push", "--to", "file://"+dir, arg)
		if code != exitOK {
			t.Fatalf("push %s: exit %d\n%s", arg, code, errOut)
		}
		if got := cachedPaths(t, dir); !slices.Equal(got, closure) {
			t.Errorf("push %s: cache has %q\nwant %q", arg, got, closure)
		}
	}

	// Plain store paths: a leaf, then a file inside the program's store
	// path (which stands for that path) with the leaf again.
	var leaf, prog string
	for _, p := range closure {
		switch {
		case len(closureOf(t, p)) == 1:
			leaf = p
		case strings.HasSuffix(p, "-hello-world"):
			prog = p
		}
	}
	dir := cacheDir(t)
	code, _, errOut := runCLI(t, "push", "--to", "file://"+dir, leaf)
	if code != exitOK {
		t.Fatalf("push %s: exit %d\n%s", leaf, code, errOut)
	}
	if got := cachedPaths(t, dir); !slices.Equal(got, []string{leaf}) {
		t.Errorf("cache has %q, want just %s", got, leaf)
	}
	inside := prog + "/bin/hello_world"
	code, _, errOut = runCLI(t, "push", "--to", "file://"+dir, inside, leaf)
	if code != exitOK || !strings.Contains(errOut, "pushed 2 roots") || !strings.Contains(errOut, "1 uploaded (") ||
		!strings.Contains(errOut, "1 already there") || !strings.Contains(errOut, "1 closure index written (1 unchanged)") {
		t.Fatalf("push %s %s: exit %d\n%s", inside, leaf, code, errOut)
	}
	want := slices.Sorted(slices.Values([]string{leaf, prog}))
	if got := cachedPaths(t, dir); !slices.Equal(got, want) {
		t.Errorf("cache has %q\nwant %q", got, want)
	}
	checkIndexes(t, "file://"+dir, pk, []string{prog, leaf}, want)

	// Unsigned: no Sig lines; Nix takes it with require-sigs = false.
	t.Setenv("NIX_SECRET_KEY_FILE", "")
	dir = cacheDir(t)
	code, _, errOut = runCLI(t, "push", "--to", "file://"+dir, "--no-sign", link)
	if code != exitOK {
		t.Fatalf("push --no-sign: exit %d\n%s", code, errOut)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.narinfo"))
	for _, f := range files {
		if b, _ := os.ReadFile(f); strings.Contains(string(b), "\nSig: ") {
			t.Errorf("%s is signed:\n%s", f, b)
		}
	}
	if len(files) != len(closure) {
		t.Errorf("%d narinfos, want %d", len(files), len(closure))
	}
	substitute(t, "file://"+dir, pk, roots, closure, "--option", "require-sigs", "false")
}

func TestPushErrors(t *testing.T) {
	t.Setenv("NIX_SECRET_KEY_FILE", "")
	dir := t.TempDir()
	goodArgs := []string{"/nix/store/00000000000000000000000000000000-x"}
	usage := [][]string{
		{"push"},
		{"push", "--secret-key", "k"},
		append([]string{"push", "--secret-key", "k"}, goodArgs...),      // no --to
		{"push", "--to", "file://" + dir, "--secret-key", "k"},          // nothing to push
		append([]string{"push", "--to", "file://" + dir}, goodArgs...),  // no key
		append([]string{"push", "--to", dir, "--no-sign"}, goodArgs...), // not a URL
		append([]string{"push", "--to", "file://" + dir, "--no-sign", "--secret-key", "k"}, goodArgs...),
		append([]string{"push", "--to", "file://" + dir, "--no-sign", "--jobs", "0"}, goodArgs...),
		append([]string{"push", "--to", "file://" + dir, "--no-sign", "--arg", "x"}, goodArgs...),
		{"push", "--to", "file://" + dir, "--no-sign", "/nix/store/short"},
	}
	for _, args := range usage {
		code, _, errOut := runCLI(t, args...)
		if code != exitUsage {
			t.Errorf("%q: exit %d, want %d\n%s", args, code, exitUsage, errOut)
		}
	}

	// A bad key file fails, naming it, before anything is built.
	bad := filepath.Join(dir, "bad.sk")
	os.WriteFile(bad, []byte("nxa-push-1:bm90IGEga2V5"), 0o600)
	for _, file := range []string{bad, filepath.Join(dir, "missing.sk")} {
		code, _, errOut := runCLI(t, "push", "--to", "file://"+dir, "--secret-key", file, "does-not-exist.nix")
		if code != exitFailure || !strings.Contains(errOut, file) || strings.Contains(errOut, "nix-build") {
			t.Errorf("key %s: exit %d\n%s", file, code, errOut)
		}
	}

	// A JSON file without init processes has nothing to push.
	noInit := filepath.Join(dir, "noinit.json")
	os.WriteFile(noInit, []byte(`{"name": "x", "role": "r", "cluster": "c", "environment": "devel",
		"task": {"processes": [{"name": "p", "cmdline": "/nix/store/00000000000000000000000000000000-x/bin/x"}],
		         "resources": {"cpu": 1, "ram": 1048576, "disk": 1048576}}}`), 0o644)
	code, _, errOut := runCLI(t, "push", "--to", "file://"+dir, "--no-sign", noInit)
	if code != exitFailure || !strings.Contains(errOut, noInit) || !strings.Contains(errOut, "nix_init") {
		t.Errorf("no init: exit %d\n%s", code, errOut)
	}

	testnix.Require(t)
	// A store path that is not in the local store.
	code, _, errOut = runCLI(t, "push", "--to", "file://"+dir, "--no-sign", goodArgs[0])
	if code != exitFailure || !strings.Contains(errOut, goodArgs[0]) || !strings.Contains(errOut, "not valid in the local store") {
		t.Errorf("invalid path: exit %d\n%s", code, errOut)
	}
}

func TestJobRoots(t *testing.T) {
	doc, err := aurora.ParseDocument([]byte(`{"jobs": [
	  {"name": "a", "role": "r", "cluster": "c", "environment": "devel", "task": {"processes": [
	    {"name": "nix_init", "cmdline": "/nix/var/nix/profiles/default/bin/nix-init '--substituter' 'http://cache/x=/y' 'web=/nix/store/11111111111111111111111111111111-root-web' 'it'\\''s=/nix/store/22222222222222222222222222222222-root-q'"},
	    {"name": "nix_init_final", "final": true, "cmdline": "'/opt/nix init' \"cleanup=/nix/store/33333333333333333333333333333333-root-c\" x\\=/nix/store/44444444444444444444444444444444-root-d"},
	    {"name": "web", "cmdline": "/nix/store/55555555555555555555555555555555-web/bin/web x=/nix/store/66666666666666666666666666666666-no"}]}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	roots, err := jobRoots("job.json", doc.Jobs)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range roots {
		got = append(got, r.path)
	}
	want := []string{
		"/nix/store/11111111111111111111111111111111-root-web",
		"/nix/store/22222222222222222222222222222222-root-q",
		"/nix/store/33333333333333333333333333333333-root-c",
		"/nix/store/44444444444444444444444444444444-root-d",
	}
	if !slices.Equal(got, want) {
		t.Errorf("roots %q\nwant %q", got, want)
	}
	if !strings.Contains(roots[1].from, "root it's") {
		t.Errorf("from %q", roots[1].from)
	}

	for _, cmdline := range []string{"nix-init 'a=/nix/store/x", `nix-init "a=/nix/store/x`} {
		doc.Jobs[0].Task.Processes[0].Cmdline = &cmdline
		if _, err := jobRoots("job.json", doc.Jobs); err == nil || !strings.Contains(err.Error(), "unterminated") {
			t.Errorf("%q: %v", cmdline, err)
		}
	}
	bad := "nix-init 'a=/nix/store/not-a-store-path'"
	doc.Jobs[0].Task.Processes[0].Cmdline = &bad
	if _, err := jobRoots("job.json", doc.Jobs); err == nil || !strings.Contains(err.Error(), "job.json: job c/r/devel/a: process nix_init") {
		t.Errorf("bad path: %v", err)
	}
}

// pushPromptly runs push, failing the test if it has not ended within a
// minute. Then it keeps unblocking the FIFOs in the cache dir for a while,
// so that the push ends and nothing is left hanging.
func pushPromptly(t *testing.T, dir string, args ...string) (int, string) {
	t.Helper()
	type out struct {
		code   int
		stderr string
	}
	done := make(chan out, 1)
	go func() {
		code, _, errOut := runCLI(t, args...)
		done <- out{code, errOut}
	}()
	select {
	case o := <-done:
		return o.code, o.stderr
	case <-time.After(time.Minute):
	}
	for range 300 {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type()&fs.ModeNamedPipe != 0 {
				// A reader blocked in open(2) gets its file, then EOF.
				if f, err := os.OpenFile(p, os.O_RDWR, 0); err == nil {
					f.Close()
				}
			}
			return nil
		})
		select {
		case o := <-done:
			t.Fatalf("push %q ran for over a minute (it ended only once its FIFOs were opened for writing)\n%s", args, o.stderr)
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("push %q still running after a minute and a half", args)
	return 0, ""
}

// storeNarInfo is the narinfo push writes for p, as far as the store
// decides it: NarHash, NarSize and References.
func storeNarInfo(t *testing.T, p string) *binarycache.NarInfo {
	t.Helper()
	q := func(args ...string) []string {
		out, err := exec.Command("nix-store", append([]string{"-q"}, append(args, p)...)...).Output()
		if err != nil {
			t.Fatalf("nix-store -q %q %s: %v", args, p, err)
		}
		return strings.Fields(string(out))
	}
	ni := &binarycache.NarInfo{StorePath: p, NarHash: q("--hash")[0]}
	if _, err := fmt.Sscan(q("--size")[0], &ni.NarSize); err != nil {
		t.Fatal(err)
	}
	for _, r := range q("--references") {
		ni.References = append(ni.References, strings.TrimPrefix(r, binarycache.StoreDir+"/"))
	}
	slices.Sort(ni.References)
	return ni
}

// A narinfo planted in the cache (valid, for the right store path, signed
// by another key) is not re-signed unless it matches the store and its NAR
// is there, with its FileSize: push uploads the NAR and narinfo afresh, says
// so, and a node then substitutes everything.
func TestPushPlantedNarInfo(t *testing.T) {
	testnix.Require(t)
	sk, pk := pushKey(t)
	otherSK, _ := pushKey(t)
	other, err := binarycache.LoadSecretKey(otherSK)
	if err != nil {
		t.Fatal(err)
	}
	fx := testnode.Chain(t, "push-planted", 1, 4, 4096)
	dir := cacheDir(t)
	os.Mkdir(filepath.Join(dir, "nar"), 0o755)

	plant := func(p string, edit func(ni *binarycache.NarInfo)) {
		ni := storeNarInfo(t, p)
		ni.URL, ni.Compression = "nar/"+binarycache.HashPart(p)+"-planted.nar", "none"
		ni.Deriver = "00000000000000000000000000000000-planted.drv"
		edit(ni)
		if err := binarycache.Sign(ni, other); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, binarycache.HashPart(p)+".narinfo"), []byte(ni.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lv := fx.Levels[0]
	// Another NAR hash; its (planted) NAR is there.
	plant(lv[0], func(ni *binarycache.NarInfo) {
		ni.NarHash = "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"
		os.WriteFile(filepath.Join(dir, ni.URL), []byte("not a NAR"), 0o644)
	})
	// What the store has, but no NAR.
	plant(lv[1], func(ni *binarycache.NarInfo) {})
	// What the store has, and the NAR is a FIFO.
	plant(lv[2], func(ni *binarycache.NarInfo) {
		if err := syscall.Mkfifo(filepath.Join(dir, ni.URL), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	// What the store has, and a NAR shorter than its FileSize.
	plant(lv[3], func(ni *binarycache.NarInfo) {
		ni.FileSize = ni.NarSize
		os.WriteFile(filepath.Join(dir, ni.URL), []byte("short"), 0o644)
	})

	code, errOut := pushPromptly(t, dir, "push", "--to", "file://"+dir, "--secret-key", sk, fx.Root)
	if code != exitOK {
		t.Fatalf("push: exit %d\n%s", code, errOut)
	}
	for i, why := range []string{"has NarHash sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s", "which cannot be read: " + binarycache.ErrNotFound.Error(),
		"is a named pipe (FIFO), not a regular file", fmt.Sprintf("which is not %d bytes long", storeNarInfo(t, lv[3]).NarSize)} {
		if !strings.Contains(errOut, "re-uploaded "+lv[i]+" (") || !strings.Contains(errOut, why) {
			t.Errorf("push does not say it re-uploaded %s because the narinfo %s:\n%s", lv[i], why, errOut)
		}
	}
	if n := countLines(errOut, "signed "); n != 0 {
		t.Errorf("push signed %d planted narinfos:\n%s", n, errOut)
	}
	if !strings.Contains(errOut, fmt.Sprintf("%d uploaded (", len(fx.Closure))) || !strings.Contains(errOut, "; 4 replacing a narinfo that could not be kept)") {
		t.Errorf("summary:\n%s", errOut)
	}
	substitute(t, "file://"+dir, pk, fx.Roots, fx.Closure)
}

// FIFOs in a file:// cache (a closure index, a narinfo, nix-cache-info) do
// not hang push: it refuses them at once, replacing the files it writes
// anyway, and fails naming nix-cache-info.
func TestPushFIFOsInCache(t *testing.T) {
	testnix.Require(t)
	sk, pk := pushKey(t)
	fx := testnode.Chain(t, "push-fifo", 1, 1, 1024)

	dir := cacheDir(t)
	index := filepath.Join(dir, binarycache.ClosureIndexName(fx.Root))
	narinfo := filepath.Join(dir, binarycache.HashPart(fx.Levels[0][0])+".narinfo")
	for _, f := range []string{index, narinfo} {
		if err := syscall.Mkfifo(f, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, errOut := pushPromptly(t, dir, "push", "--to", "file://"+dir, "--secret-key", sk, fx.Root)
	if code != exitOK {
		t.Fatalf("push: exit %d\n%s", code, errOut)
	}
	for _, want := range []string{index + " is a named pipe (FIFO)", narinfo + " is a named pipe (FIFO)", "re-uploaded " + fx.Levels[0][0]} {
		if !strings.Contains(errOut, want) {
			t.Errorf("push does not say %q:\n%s", want, errOut)
		}
	}
	for _, f := range []string{index, narinfo} {
		if fi, err := os.Lstat(f); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s after push: %v %v", f, fi, err)
		}
	}
	checkIndexes(t, "file://"+dir, pk, fx.Roots, fx.Closure)

	dir = cacheDir(t)
	info := filepath.Join(dir, "nix-cache-info")
	if err := syscall.Mkfifo(info, 0o644); err != nil {
		t.Fatal(err)
	}
	code, errOut = pushPromptly(t, dir, "push", "--to", "file://"+dir, "--secret-key", sk, fx.Root)
	if code != exitFailure || !strings.Contains(errOut, info+" is a named pipe (FIFO)") {
		t.Errorf("push to a cache whose nix-cache-info is a FIFO: exit %d\n%s", code, errOut)
	}
}

// --netrc wins over nix.conf's netrc-file, which is the default; a missing
// file means no credentials; a bad one is named.
func TestPushNetrc(t *testing.T) {
	dir := t.TempDir()
	conf, flag := filepath.Join(dir, "conf-netrc"), filepath.Join(dir, "flag-netrc")
	os.WriteFile(conf, []byte("machine cache.example login conf password c\n"), 0o600)
	os.WriteFile(flag, []byte("machine cache.example login flag password f\n"), 0o600)
	t.Setenv("NIX_CONFIG", "netrc-file = "+conf)
	for file, want := range map[string]string{"": "conf", flag: "flag"} {
		n, err := pushNetrc(file, nixconf.Load)
		if err != nil {
			t.Fatal(err)
		}
		if login, _, ok := n.Credentials("cache.example"); !ok || login != want {
			t.Errorf("pushNetrc(%q): login %q, %v; want %q", file, login, ok, want)
		}
	}
	t.Setenv("NIX_CONFIG", "netrc-file = "+filepath.Join(dir, "missing"))
	if n, err := pushNetrc("", nixconf.Load); err != nil {
		t.Errorf("missing netrc-file: %v", err)
	} else if _, _, ok := n.Credentials("cache.example"); ok {
		t.Errorf("missing netrc-file gave credentials")
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("machine\n"), 0o600)
	t.Setenv("NIX_CONFIG", "netrc-file = "+bad)
	if _, err := pushNetrc("", nixconf.Load); err == nil || !strings.Contains(err.Error(), "nix.conf's netrc-file") {
		t.Errorf("bad netrc-file: %v", err)
	}
}

// Each --compression writes NARs named and described as Nix's binary cache
// store writes them; the binarycache reader checks FileHash, FileSize and
// NarHash of every one, and Nix 2.8 substitutes from the cache.
func TestPushCompression(t *testing.T) {
	testnix.Require(t)
	sk, pk := pushKey(t)
	_, _, roots, closure := builtJob(t)
	key, err := binarycache.ParsePublicKey(pk)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ method, ext string }{{"zstd", ".nar.zst"}, {"xz", ".nar.xz"}, {"none", ".nar"}} {
		t.Run(c.method, func(t *testing.T) {
			dir := cacheDir(t)
			args := []string{"push", "--to", "file://" + dir, "--secret-key", sk, "--compression", c.method}
			code, _, errOut := runCLI(t, append(args, roots...)...)
			if code != exitOK {
				t.Fatalf("push: exit %d\n%s", code, errOut)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cache, err := binarycache.Open(ctx, "file://"+dir, binarycache.Options{TrustedKeys: []binarycache.PublicKey{key}, VerifyFileHash: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range closure {
				ni, err := cache.NarInfo(ctx, p)
				if err != nil {
					t.Fatal(err)
				}
				if ni.Compression != c.method || !strings.HasSuffix(ni.URL, c.ext) || strings.TrimSuffix(ni.URL, c.ext) != "nar/"+strings.TrimPrefix(ni.FileHash, "sha256:") {
					t.Errorf("%s: Compression %q, URL %q, FileHash %s; want %s and nar/FILEHASH%s", p, ni.Compression, ni.URL, ni.FileHash, c.method, c.ext)
				}
				data, err := os.ReadFile(filepath.Join(dir, ni.URL))
				if err != nil {
					t.Fatal(err)
				}
				sum := sha256.Sum256(data)
				if got := "sha256:" + nixbase32.EncodeToString(sum[:]); got != ni.FileHash || uint64(len(data)) != ni.FileSize {
					t.Errorf("%s: the file has %d bytes, %s; the narinfo says %d, %s", ni.URL, len(data), got, ni.FileSize, ni.FileHash)
				}
				if c.method == "none" && (ni.FileHash != ni.NarHash || ni.FileSize != ni.NarSize) {
					t.Errorf("%s: uncompressed, but FileHash %s FileSize %d differ from the NAR's %s %d", p, ni.FileHash, ni.FileSize, ni.NarHash, ni.NarSize)
				}
				// Download checks NarHash and NarSize (and, with
				// VerifyFileHash, the file's) as it reads.
				if n, err := cache.Download(ctx, ni, io.Discard); err != nil || uint64(n) != ni.NarSize {
					t.Errorf("%s: download %d bytes, %v; NarSize %d", p, n, err, ni.NarSize)
				}
			}
			if c.method != "zstd" { // TestPushFileCache substitutes a zstd cache
				substitute(t, "file://"+dir, pk, roots, closure)
			}
		})
	}
	if code, _, errOut := runCLI(t, "push", "--to", "file:///x", "--no-sign", "--compression", "bzip2", "/nix/store/x"); code != exitUsage || !strings.Contains(errOut, "want zstd, xz or none") {
		t.Errorf("--compression bzip2: exit %d\n%s", code, errOut)
	}
}

// An https cache whose certificate an internal CA signed: push trusts what
// nix.conf's ssl-cert-file names, as Nix does, and a bundle that did not
// sign the server's certificate fails, naming the setting and the file.
func TestPushHTTPSInternalCA(t *testing.T) {
	testnix.Require(t)
	sk, pk := pushKey(t)
	link, _, roots, closure := builtJob(t)
	cache := testnode.NewCache(t, testnode.CacheOptions{Writable: true})
	target, _ := url.Parse(cache.URL)
	front := httptest.NewTLSServer(httputil.NewSingleHostReverseProxy(target))
	t.Cleanup(front.Close)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	// Another CA (every httptest server shares one certificate).
	wrong := testca.New(t, dir, "other-ca").File

	conf := os.Getenv("NIX_CONFIG")
	t.Setenv("NIX_SSL_CERT_FILE", "")
	t.Setenv("SSL_CERT_FILE", "")
	t.Setenv("NIX_CONFIG", conf+"\nssl-cert-file = "+wrong)
	code, _, errOut := runCLI(t, "push", "--to", front.URL, "--secret-key", sk, link)
	if code != exitFailure || !strings.Contains(errOut, "ssl-cert-file") || !strings.Contains(errOut, wrong) {
		t.Fatalf("push with a CA that did not sign the cache's certificate: exit %d\n%s", code, errOut)
	}

	t.Setenv("NIX_CONFIG", conf+"\nssl-cert-file = "+ca)
	code, _, errOut = runCLI(t, "push", "--to", front.URL, "--secret-key", sk, link)
	if code != exitOK {
		t.Fatalf("push over https with the internal CA: exit %d\n%s", code, errOut)
	}
	if got := cachedPaths(t, cache.Dir); !slices.Equal(got, closure) {
		t.Errorf("cache has %q\nwant %q", got, closure)
	}
	substitute(t, cache.URL, pk, roots, closure)
}
