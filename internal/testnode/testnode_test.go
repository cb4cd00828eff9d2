package testnode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/internal/testnix"
	"github.com/nix-aurora/nix-aurora/nixconf"
)

func output(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(cmd.Args, " "), err, out, stderr.String())
	}
	return string(out)
}

func TestChain(t *testing.T) {
	t.Parallel()
	fx := Chain(t, "chain test", 3, 2, 1000)
	if fx.Name != "chain-test" {
		t.Errorf("Name = %q", fx.Name)
	}
	if len(fx.Closure) != 7 || !slices.Contains(fx.Closure, fx.Root) {
		t.Fatalf("Closure = %v", fx.Closure)
	}
	for level, paths := range fx.Levels {
		for i, p := range paths {
			if !slices.Contains(fx.Closure, p) {
				t.Errorf("Levels[%d][%d] = %s is not in the closure", level, i, p)
			}
			st, err := os.Stat(p + "/data")
			if err != nil || st.Size() != 1000 {
				t.Errorf("%s/data: %v, %v", p, st, err)
			}
			if level > 0 {
				if target, err := os.Readlink(p + "/link"); err != nil || target != fx.Levels[level-1][i] {
					t.Errorf("%s/link -> %q (%v), want %s", p, target, err, fx.Levels[level-1][i])
				}
				refs := Closure(t, p)
				if len(refs) != 1+(level)*2 {
					t.Errorf("closure of %s: %v", p, refs)
				}
			}
		}
	}
	if target, err := os.Readlink(fx.Link); err != nil || target != fx.Levels[2][0] {
		t.Errorf("Link -> %q (%v)", target, err)
	}
	if got := output(t, exec.Command(fx.Program)); got != fx.Message {
		t.Errorf("%s printed %q, want %q", fx.Program, got, fx.Message)
	}
	// Same name, new nonce: new paths and new data.
	fx2 := Chain(t, "chain test", 1, 1, 1000)
	if fx2.Levels[0][0] == fx.Levels[0][0] || fx2.Nonce == fx.Nonce {
		t.Errorf("two Chains share %s", fx.Levels[0][0])
	}
	d1, _ := os.ReadFile(fx.Levels[0][0] + "/data")
	d2, _ := os.ReadFile(fx2.Levels[0][0] + "/data")
	if string(d1) == string(d2) {
		t.Errorf("two Chains have the same data")
	}
}

// TestSubstituteAsNobody is the main recipe: a cache, a node whose daemon
// substitutes from it for an unprivileged client, GC roots in the sandbox.
func TestSubstituteAsNobody(t *testing.T) {
	testnix.RequireRoot(t)
	t.Parallel()
	fx := Chain(t, "nobody", 2, 2, 4096)
	cache := NewCache(t, CacheOptions{}, fx.Root)
	node := NewNode(t, NodeOptions{
		Substituters:      []string{cache.URL},
		TrustedPublicKeys: []string{cache.PublicKey},
	})

	// What nix-init will read on this node.
	conf, err := nixconf.LoadEnv(node.Environ())
	if err != nil {
		t.Fatal(err)
	}
	if got := conf.Substituters(); !reflect.DeepEqual(got, []string{cache.URL}) {
		t.Errorf("nixconf Substituters = %v", got)
	}
	if got := conf.TrustedPublicKeys(); !reflect.DeepEqual(got, []string{cache.PublicKey}) {
		t.Errorf("nixconf TrustedPublicKeys = %v", got)
	}

	node.StartDaemon(t)
	if st, err := os.Stat(node.Socket); err != nil || st.Mode().Perm() != 0o666 {
		t.Fatalf("socket: %v %v", st, err)
	}
	sb := NewSandbox(t, node)
	root := filepath.Join(sb.Dir, ".gc", "app")
	if err := os.Mkdir(filepath.Dir(root), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Dir(root), int(sb.UID), int(sb.GID)); err != nil {
		t.Fatal(err)
	}
	cmd := sb.Command("nix-store", "-r", fx.Root, "--add-root", root, "--indirect")
	cmd.Env = append(cmd.Env, "NIX_REMOTE="+node.DaemonURI())
	if got := strings.TrimSpace(output(t, cmd)); got != root {
		t.Errorf("nix-store -r printed %q, want %q", got, root)
	}
	if inv := node.Invalid(t, fx.Closure...); len(inv) > 0 {
		t.Fatalf("not valid in the node: %v", inv)
	}
	if !node.Valid(t, fx.Root) {
		t.Fatal("root not valid")
	}
	if got := node.ValidPaths(t); len(got) != len(fx.Closure) {
		t.Errorf("ValidPaths = %v, want the %d paths of the closure", got, len(fx.Closure))
	}
	node.Verify(t)
	if n := cache.Count(".narinfo"); n < len(fx.Closure) {
		t.Errorf("%d narinfo requests for %d paths: %v", n, len(fx.Closure), cache.Requests())
	}
	if st, err := os.Lstat(root); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("root link: %v %v", st, err)
	}
	st, _ := os.Lstat(root)
	if uid := st.Sys().(*syscall.Stat_t).Uid; uid != sb.UID {
		t.Errorf("root link owned by %d, want nobody", uid)
	}
	roots := node.Roots(t)
	if !slices.Contains(roots, Root{Link: root, Path: fx.Root}) {
		t.Errorf("Roots = %v, want %s -> %s", roots, root, fx.Root)
	}

	// Programs run as nobody, also copied ones.
	id := sb.CopyExecutable(t, "/usr/bin/id")
	if got := strings.TrimSpace(output(t, sb.Command(id, "-u"))); got != fmt.Sprint(sb.UID) {
		t.Errorf("id -u as the sandbox user = %q, want %d", got, sb.UID)
	}
	// The node's program runs as nobody with the node's store on /nix.
	if got := output(t, sb.BindCommand("sh", "-c", `id -u; exec "$0"`, fx.Program)); got != fmt.Sprintf("%d\n%s", sb.UID, fx.Message) {
		t.Errorf("%s printed %q, want %q", fx.Program, got, fx.Message)
	}
	// Rooted: GC deletes nothing. Unrooted: the whole closure.
	if del := node.GC(t); len(del) != 0 {
		t.Errorf("GC deleted rooted paths: %v", del)
	}
	if err := os.Remove(root); err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(fx.Closure)
	slices.Sort(want)
	if del := node.GC(t); !reflect.DeepEqual(del, want) {
		t.Errorf("GC deleted %v, want %v", del, want)
	}
	if node.Valid(t, fx.Root) {
		t.Error("root still valid after GC")
	}
}

func TestVerifyNoticesCorruption(t *testing.T) {
	t.Parallel()
	fx := Chain(t, "corrupt", 1, 1, 100)
	node := NewNode(t, NodeOptions{})
	node.Copy(t, fx.Root)
	node.Verify(t)
	data := node.Path(fx.Levels[0][0]) + "/data"
	if err := os.Chmod(data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(data, []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	ft := &fakeT{TB: t}
	func() {
		defer func() { _ = recover() }()
		node.Verify(ft)
	}()
	if !ft.failed || !strings.Contains(ft.msg, "was modified") {
		t.Errorf("Verify after corruption: failed=%v msg=%q", ft.failed, ft.msg)
	}
}

// fakeT records a Fatalf instead of failing the real test.
type fakeT struct {
	testing.TB
	failed bool
	msg    string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed = true
	f.msg = fmt.Sprintf(format, args...)
	panic("fatal")
}

// TestCacheFaults checks each fault with a plain HTTP client.
func TestCacheFaults(t *testing.T) {
	t.Parallel()
	cache := NewCache(t, CacheOptions{})
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	get := func(p string) (int, error) {
		resp, err := client.Get(cache.URL + p)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	expect := func(p string, want int) {
		t.Helper()
		if got, err := get(p); got != want {
			t.Errorf("GET %s = %d (%v), want %d", p, got, err, want)
		}
	}

	expect("/nix-cache-info", 200)
	expect("/nothing.narinfo", 404)
	expect("/../../etc/passwd", 404)

	cache.Fail(503, 2)
	expect("/nix-cache-info", 503)
	expect("/nix-cache-info", 503)
	expect("/nix-cache-info", 200)

	cache.FailMatching(".narinfo", 500, 1)
	expect("/nix-cache-info", 200)
	expect("/x.narinfo", 500)
	expect("/x.narinfo", 404)

	// Timed faults: generous windows, and bounded polling for their end, so
	// that a loaded machine does not make this flaky.
	waitFor := func(p string, want int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if code, _ := get(p); code == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s never answered %d", p, want)
			}
		}
	}
	start := time.Now()
	cache.FailFor(429, time.Second)
	expect("/nix-cache-info", 429)
	waitFor("/nix-cache-info", 200)
	if d := time.Since(start); d < time.Second {
		t.Errorf("FailFor(1s) ended after %v", d)
	}

	cache.Drop("", 1)
	if _, err := get("/nix-cache-info"); err == nil {
		t.Error("a dropped request got a response")
	}
	expect("/nix-cache-info", 200)

	cache.Latency(200 * time.Millisecond)
	start = time.Now()
	expect("/nix-cache-info", 200)
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("Latency: answered in %v", d)
	}
	cache.Latency(0)

	cache.StallBody(2 * time.Second)
	start = time.Now()
	resp, err := client.Get(cache.URL + "/nix-cache-info")
	if err != nil {
		t.Fatal(err)
	}
	headers := time.Since(start)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if headers > 1500*time.Millisecond || time.Since(start) < 2*time.Second || string(body) != "StoreDir: /nix/store\n" {
		t.Errorf("StallBody: headers after %v, body after %v: %q", headers, time.Since(start), body)
	}
	cache.StallBody(0)

	// StallBodyMatching holds only what matches.
	cache.StallBodyMatching("/nar/", 2*time.Second)
	start = time.Now()
	expect("/nix-cache-info", 200)
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("StallBodyMatching(/nar/) held /nix-cache-info for %v", d)
	}
	cache.StallBodyMatching("/nix-cache", 2*time.Second)
	start = time.Now()
	expect("/nix-cache-info", 200)
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("StallBodyMatching(/nix-cache): answered in %v", d)
	}
	cache.StallBody(0)

	// Down: refused, then back on the same port.
	cache.Down(time.Second)
	_, err = get("/nix-cache-info")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("while down: %v, want connection refused", err)
	}
	waitFor("/nix-cache-info", 200)
	if err := cache.SetDown(true); err != nil {
		t.Fatal(err)
	}
	if _, err := get("/nix-cache-info"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("SetDown(true): %v", err)
	}
	if err := cache.SetDown(false); err != nil {
		t.Fatal(err)
	}
	expect("/nix-cache-info", 200)

	// A request stalled when the cache goes down ends with it.
	cache.StallBody(time.Hour)
	before := len(cache.Requests())
	errc := make(chan error, 1)
	go func() { _, err := get("/nix-cache-info"); errc <- err }()
	for deadline := time.Now().Add(5 * time.Second); len(cache.Requests()) == before; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stalled request never arrived")
		}
	}
	if err := cache.Reset(); err != nil { // clears the stall for later requests only
		t.Fatal(err)
	}
	if err := cache.SetDown(true); err != nil {
		t.Fatal(err)
	}
	select {
	case <-errc:
	case <-time.After(5 * time.Second):
		t.Fatal("a stalled request outlived the server")
	}
	if err := cache.SetDown(false); err != nil {
		t.Fatal(err)
	}
	if err := cache.Reset(); err != nil {
		t.Fatal(err)
	}
	expect("/nix-cache-info", 200)
	if got := cache.Requests(); !reflect.DeepEqual(got, []string{"/nix-cache-info"}) {
		t.Errorf("Requests after Reset = %v", got)
	}
	if log := cache.Log(); len(log) != 1 || log[0].Status != 200 || log[0].Method != "GET" {
		t.Errorf("Log = %+v", log)
	}
}

// TestNixThroughFaults shows Nix retrying through injected 503s, and the
// faults in the request log.
func TestNixThroughFaults(t *testing.T) {
	t.Parallel()
	fx := Chain(t, "faults", 1, 1, 100)
	cache := NewCache(t, CacheOptions{Compression: "xz"}, fx.Root)
	node := NewNode(t, NodeOptions{
		Substituters:      []string{cache.URL},
		TrustedPublicKeys: []string{cache.PublicKey},
	})
	cache.FailMatching("/nar/", 503, 2)
	output(t, node.Command("nix-store", "-r", fx.Root))
	if !node.Valid(t, fx.Root) {
		t.Fatal("not substituted")
	}
	var faults, nars int
	for _, r := range cache.Log() {
		if r.Status == 503 {
			faults++
		}
		if strings.HasPrefix(r.Path, "/nar/") && strings.HasSuffix(r.Path, ".nar.xz") {
			nars++
		}
	}
	if faults != 2 || nars != len(fx.Closure)+2 {
		t.Errorf("%d faults and %d NAR requests, want 2 and %d: %+v", faults, nars, len(fx.Closure)+2, cache.Log())
	}
	node.Verify(t)

	// A node that trusts another key substitutes nothing.
	other := NewNode(t, NodeOptions{Substituters: []string{cache.URL}, TrustedPublicKeys: []string{"other-1:" + strings.Repeat("A", 43) + "="}})
	cmd := other.Command("nix-store", "-r", fx.Root)
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("substituted without a trusted signature: %s", out)
	}
	if other.Valid(t, fx.Root) {
		t.Error("an unsigned path became valid")
	}
}

func TestDaemonKillAndRestart(t *testing.T) {
	t.Parallel()
	node := NewNode(t, NodeOptions{})
	node.StartDaemon(t)
	ping := func() {
		t.Helper()
		output(t, node.ClientCommand("nix", "store", "ping"))
	}
	ping()

	// An open connection is served by a worker; a crash drops it too.
	conn, err := net.Dial("unix", node.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var hello [8]byte
	binary.LittleEndian.PutUint64(hello[:], 0x6e697863)
	if _, err := conn.Write(hello[:]); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 16)
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(conn, reply); err != nil || binary.LittleEndian.Uint64(reply) != 0x6478696f {
		t.Fatalf("handshake: %x %v", reply, err)
	}
	pid := node.DaemonPID()
	if len(descendants(pid)) == 0 {
		t.Fatal("no worker for the open connection")
	}
	node.KillDaemon()
	if node.DaemonRunning() {
		t.Fatal("daemon still running after KillDaemon")
	}
	if _, err := conn.Read(reply); err == nil {
		t.Fatal("the connection survived the crash")
	}
	if _, err := net.Dial("unix", node.Socket); err == nil {
		t.Fatal("the socket accepts connections with no daemon")
	}

	node.StartDaemon(t)
	ping()
	node.RestartDaemon(t)
	ping()
	if !strings.Contains(node.DaemonLog(), "stopped (signal killed)") {
		t.Errorf("daemon log: %s", node.DaemonLog())
	}
}

func TestBindStore(t *testing.T) {
	testnix.RequireRoot(t)
	t.Parallel()
	fx := Chain(t, "bind", 1, 1, 0)
	node := NewNode(t, NodeOptions{})
	node.Copy(t, fx.Root)
	if inv := node.Invalid(t, fx.Closure...); len(inv) != 0 {
		t.Fatalf("Copy left %v invalid", inv)
	}
	// Under BindStore, /nix is the node's: only the closure is there.
	argv := append(BindStore(node.Root), "sh", "-c", `ls /nix/store | wc -l; exec "$0"`, fx.Program)
	got := output(t, exec.Command(argv[0], argv[1:]...))
	n := strings.Fields(got)[0]
	if want := "2"; n != want { // the two paths of the closure (hidden .links aside)
		t.Errorf("/nix/store under BindStore has %s entries, want %s: %q", n, want, got)
	}
	if !strings.HasSuffix(got, fx.Message) {
		t.Errorf("program printed %q, want %q", got, fx.Message)
	}
	if got := output(t, node.BindCommand(fx.Program)); got != fx.Message {
		t.Errorf("BindCommand: %q", got)
	}
	// The host's mount table is untouched.
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), node.Root) {
		t.Error("the bind mount leaked into the host namespace")
	}
}

// TestWritableCache uploads with `nix copy --to http://…` (PUT) and reads
// the result back through another node.
func TestWritableCache(t *testing.T) {
	t.Parallel()
	fx := Chain(t, "put", 1, 2, 100)
	cache := NewCache(t, CacheOptions{Writable: true})
	mustRun(t, baseEnv(), "nix", "--experimental-features", "nix-command", "copy",
		"--to", cache.URL+"?compression=zstd&secret-key="+cache.SecretKeyFile, fx.Root)
	for _, p := range fx.Closure {
		if _, err := os.Stat(cache.NarinfoFile(p)); err != nil {
			t.Errorf("not uploaded: %v", err)
		}
		if _, err := os.Stat(cache.NarFile(t, p)); err != nil {
			t.Errorf("NAR not uploaded: %v", err)
		}
	}
	if cache.Count("") == 0 || !slices.ContainsFunc(cache.Log(), func(r Request) bool { return r.Method == "PUT" && r.Status == 200 }) {
		t.Errorf("no PUT in %+v", cache.Log())
	}
	node := NewNode(t, NodeOptions{Substituters: []string{cache.URL}, TrustedPublicKeys: []string{cache.PublicKey}})
	output(t, node.Command("nix-store", "-r", fx.Root))
	node.Verify(t)

	ro := NewCache(t, CacheOptions{})
	req, _ := http.NewRequest(http.MethodPut, ro.URL+"/x.narinfo", strings.NewReader("x"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PUT to a read-only cache: %d", resp.StatusCode)
	}
}
