package store

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/internal/testnix"
)

// These tests run against the real Nix 2.8: a closure built with nix-build
// into /nix/store, chroot stores in temporary directories, and nix-daemon
// on temporary sockets.

const closureNix = `
let
  mk = name: script: derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    args = [ "-c" script ];
  };
  dep = mk "nix-aurora-store-test-dep" "echo 'hello from dep' > $out";
  app = mk "nix-aurora-store-test-app" ''
    mkdir -p $out/bin
    printf '#!/bin/sh\ncat %s\n' ${dep} > $out/bin/hello
    chmod +x $out/bin/hello
    ln -s ${dep} $out/dep-link
  '';
  solo = mk "nix-aurora-store-test-solo" "echo solo > $out";
in { inherit dep app solo; }
`

type testClosure struct{ dep, app, solo string }

var (
	closureOnce sync.Once
	closure     testClosure
	closureErr  error
)

// buildClosure builds the test closure once per test process.
func buildClosure(t *testing.T) testClosure {
	t.Helper()
	testnix.Require(t)
	closureOnce.Do(func() {
		dir, err := os.MkdirTemp("", "nxa-closure")
		if err != nil {
			closureErr = err
			return
		}
		defer os.RemoveAll(dir)
		file := filepath.Join(dir, "closure.nix")
		if closureErr = os.WriteFile(file, []byte(closureNix), 0o644); closureErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "nix-build", "--no-out-link", file, "-A", "dep", "-A", "app", "-A", "solo")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			closureErr = fmt.Errorf("nix-build: %v\n%s", err, stderr.String())
			return
		}
		paths := strings.Fields(string(out))
		if len(paths) != 3 {
			closureErr = fmt.Errorf("nix-build printed %q, want 3 paths", out)
			return
		}
		closure = testClosure{dep: paths[0], app: paths[1], solo: paths[2]}
	})
	if closureErr != nil {
		t.Fatal(closureErr)
	}
	return closure
}

func spawn(t *testing.T, o StdioOptions) *Conn {
	t.Helper()
	c, err := Spawn(ctxT(t), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// copyPaths copies paths (in reference order) from one store to another
// with NarFromPath and AddToStoreNar, and returns their infos in the source.
func copyPaths(t *testing.T, from, to *Conn, paths ...string) []*PathInfo {
	t.Helper()
	var infos []*PathInfo
	for _, p := range paths {
		var nar bytes.Buffer
		info, err := from.NarFromPath(ctxT(t), p, &nar)
		if err != nil {
			t.Fatal(err)
		}
		if uint64(nar.Len()) != info.NarSize {
			t.Fatalf("NarFromPath(%s): %d bytes, NarSize %d", p, nar.Len(), info.NarSize)
		}
		if err := to.AddToStoreNar(ctxT(t), *info, &nar, false, true); err != nil {
			t.Fatal(err)
		}
		infos = append(infos, info)
	}
	return infos
}

// sharedDir is a temporary directory that user nobody can reach.
func sharedDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for _, p := range []string{filepath.Dir(d), d} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func TestSpawnRoundTrip(t *testing.T) {
	cl := buildClosure(t)
	host := spawn(t, StdioOptions{})
	wantVersion, wantProto := testnix.Version(t), min(testnix.DaemonProtocol(t), clientVersion)
	if host.DaemonVersion() != wantVersion || host.Protocol() != wantProto || host.Trust() != Trusted {
		t.Errorf("host: version %q, protocol %#x, trust %v; want %s, %#x, trusted",
			host.DaemonVersion(), host.Protocol(), host.Trust(), wantVersion, wantProto)
	}
	if l := host.Location(); l.Mode != Local || l.String() != "local" {
		t.Errorf("host location = %#v", l)
	}

	dir := t.TempDir()
	chroot := spawn(t, StdioOptions{Store: dir})
	if l := chroot.Location(); l.Mode != Local || l.Root != dir {
		t.Errorf("chroot location = %#v", l)
	}
	var events []Event
	chroot.SetLogger(func(ev Event) { events = append(events, ev) })

	infos := copyPaths(t, host, chroot, cl.dep, cl.app)

	for _, want := range infos {
		got, err := chroot.QueryPathInfo(ctxT(t), want.Path)
		if err != nil {
			t.Fatal(err)
		}
		if got.NarHash != want.NarHash || got.NarSize != want.NarSize || got.Deriver != want.Deriver ||
			!reflect.DeepEqual(got.References, want.References) || got.CA != want.CA {
			t.Errorf("chroot info %#v\nhost info %#v", got, want)
		}
	}
	app := infos[1]
	if !slices.Contains(app.References, cl.dep) {
		t.Errorf("app references %q, want %s among them", app.References, cl.dep)
	}
	// The NAR read back from the chroot store is the same.
	var back bytes.Buffer
	if _, err := chroot.NarFromPath(ctxT(t), cl.app, &back); err != nil {
		t.Fatal(err)
	}
	if sha256hex(back.Bytes()) != app.NarHash {
		t.Errorf("NAR read back hashes to %s, want %s", sha256hex(back.Bytes()), app.NarHash)
	}
	// Importing an already valid path just drains the frames.
	copyPaths(t, host, chroot, cl.dep)

	out, err := exec.Command("nix-store", "--store", dir, "--verify", "--check-contents").CombinedOutput()
	if err != nil {
		t.Errorf("nix-store --verify --check-contents: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, strings.TrimPrefix(cl.app, "/"), "bin/hello")); err != nil {
		t.Errorf("imported file missing: %v", err)
	}
	t.Logf("%d log events during the import", len(events))
}

func TestSpawnErrors(t *testing.T) {
	testnix.Require(t)
	_, err := Spawn(ctxT(t), StdioOptions{Store: "bogus://nowhere"})
	if err == nil || !strings.Contains(err.Error(), "bogus://nowhere") {
		t.Fatalf("Spawn(bogus store) = %v, want an error naming the store", err)
	}
	t.Logf("bogus store: %v", err)

	_, err = Spawn(ctxT(t), StdioOptions{NixDaemon: "/nonexistent/nix-daemon"})
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Spawn(missing program) = %v", err)
	}
}

// daemon is a nix-daemon serving a chroot store on a temporary socket.
type daemon struct {
	store, socket string
}

func startDaemon(t *testing.T, store string) daemon {
	t.Helper()
	sockDir := sharedDir(t)
	sock := filepath.Join(sockDir, "socket")
	cmd := exec.Command("nix-daemon", "--store", store,
		"--option", "substituters", "", "--option", "narinfo-cache-negative-ttl", "0")
	cmd.Env = append(os.Environ(), "NIX_DAEMON_SOCKET_PATH="+sock)
	cmd.Env = slices.DeleteFunc(cmd.Env, func(kv string) bool { return strings.HasPrefix(kv, "NIX_REMOTE=") })
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var logs tailBuffer
	logs.max = 16 << 10
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		// The daemon and the workers it forked for connections.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("nix-daemon output:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	// The socket file appears at bind(), before listen(): wait for a
	// connection to be accepted, not for the file.
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("nix-daemon exited: %s", logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("nix-daemon did not create %s: %s", sock, logs.String())
		}
	}
	return daemon{store: store, socket: sock}
}

func dial(t *testing.T, sock string) *Conn {
	t.Helper()
	c, err := Dial(ctxT(t), sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestDaemonSocket(t *testing.T) {
	cl := buildClosure(t)
	host := spawn(t, StdioOptions{})
	storeDir := sharedDir(t)
	hostInfos := copyPaths(t, host, spawn(t, StdioOptions{Store: storeDir}), cl.dep, cl.app)
	d := startDaemon(t, storeDir)

	c := dial(t, d.socket)
	ctx := ctxT(t)
	// The daemon says whether it trusts the client from 1.35 on; this test
	// runs as root, whom a daemon trusts by default.
	wantVersion, wantProto, wantTrust := testnix.Version(t), min(testnix.DaemonProtocol(t), clientVersion), TrustUnknown
	if wantProto >= 0x123 {
		wantTrust = Trusted
	}
	if c.DaemonVersion() != wantVersion || c.Protocol() != wantProto || c.Trust() != wantTrust {
		t.Errorf("version %q, protocol %#x, trust %v; want %s, %#x, %v",
			c.DaemonVersion(), c.Protocol(), c.Trust(), wantVersion, wantProto, wantTrust)
	}
	if l := c.Location(); l.Mode != Daemon || l.Socket != d.socket {
		t.Errorf("location = %#v", l)
	}

	t.Run("queries", func(t *testing.T) {
		if ok, err := c.IsValidPath(ctx, cl.app); err != nil || !ok {
			t.Errorf("IsValidPath(app) = %v, %v", ok, err)
		}
		if ok, err := c.IsValidPath(ctx, cl.solo); err != nil || ok {
			t.Errorf("IsValidPath(solo) = %v, %v", ok, err)
		}
		valid, err := c.QueryValidPaths(ctx, []string{cl.solo, cl.app, cl.dep}, false)
		slices.Sort(valid)
		want := []string{cl.app, cl.dep}
		slices.Sort(want)
		if err != nil || !slices.Equal(valid, want) {
			t.Errorf("QueryValidPaths = %q, %v; want %q", valid, err, want)
		}
		info, err := c.QueryPathInfo(ctx, cl.app)
		if err != nil || info.NarHash != hostInfos[1].NarHash || !reflect.DeepEqual(info.References, hostInfos[1].References) {
			t.Errorf("QueryPathInfo = %#v, %v", info, err)
		}
		if _, err := c.QueryPathInfo(ctx, cl.solo); !errors.Is(err, ErrNotValid) {
			t.Errorf("QueryPathInfo(solo) = %v, want ErrNotValid", err)
		}
		infos, err := c.QueryPathInfos(ctx, []string{cl.app, cl.solo, cl.dep})
		if err != nil || len(infos) != 2 || infos[cl.app].NarHash != hostInfos[1].NarHash ||
			!reflect.DeepEqual(infos[cl.dep].References, hostInfos[0].References) {
			t.Errorf("QueryPathInfos = %#v, %v; want app and dep, not solo", infos, err)
		}
		m, err := c.QueryMissing(ctx, []string{cl.app, cl.solo})
		if err != nil || !slices.Equal(m.Unknown, []string{cl.solo}) || len(m.WillBuild)+len(m.WillSubstitute) != 0 {
			t.Errorf("QueryMissing = %#v, %v", m, err)
		}
		subs, err := c.QuerySubstitutablePathInfos(ctx, []string{cl.solo})
		if err != nil || len(subs) != 0 {
			t.Errorf("QuerySubstitutablePathInfos = %#v, %v", subs, err)
		}
	})

	t.Run("roots", func(t *testing.T) {
		if err := c.AddTempRoot(ctx, cl.app); err != nil {
			t.Error(err)
		}
		link := filepath.Join(sharedDir(t), "roots", "app")
		os.MkdirAll(filepath.Dir(link), 0o755)
		if err := os.Symlink(cl.app, link); err != nil {
			t.Fatal(err)
		}
		if err := c.AddIndirectRoot(ctx, link); err != nil {
			t.Fatal(err)
		}
		sum := sha1.Sum([]byte(link))
		auto := filepath.Join(d.store, "nix/var/nix/gcroots/auto", nix32(sum[:]))
		if target, err := os.Readlink(auto); err != nil || target != link {
			t.Errorf("gcroots/auto link: %q, %v; want → %s", target, err, link)
		}
		if err := c.AddIndirectRoot(ctx, "roots/app"); err == nil {
			t.Error("AddIndirectRoot accepted a relative path")
		}
	})

	t.Run("substitution fails", func(t *testing.T) {
		cache := sharedDir(t)
		os.WriteFile(filepath.Join(cache, "nix-cache-info"), []byte("StoreDir: /nix/store\n"), 0o644)
		o := DefaultOptions()
		o.Overrides = map[string]string{"substituters": "file://" + cache, "narinfo-cache-negative-ttl": "0"}
		if err := c.SetOptions(ctx, o); err != nil {
			t.Fatal(err)
		}
		err := c.EnsurePath(ctx, cl.solo)
		var de *DaemonError
		if !errors.As(err, &de) || !strings.Contains(de.Message, cl.solo) {
			t.Fatalf("EnsurePath = %v, want a DaemonError naming the path", err)
		}
		t.Logf("EnsurePath: %v", err)
		if ok, err := c.IsValidPath(ctx, cl.app); err != nil || !ok {
			t.Errorf("after the error: IsValidPath = %v, %v", ok, err)
		}
	})

	t.Run("malformed path stays client-side", func(t *testing.T) {
		if _, err := c.IsValidPath(ctx, "/nix/store/not-a-store-path"); err == nil {
			t.Fatal("no error")
		}
		if ok, err := c.IsValidPath(ctx, cl.dep); err != nil || !ok {
			t.Errorf("after the refusal: IsValidPath = %v, %v", ok, err)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		// A substituter that never answers: EnsurePath hangs in the daemon
		// until the context ends it.
		block := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-block:
			case <-r.Context().Done():
			}
			http.NotFound(w, r)
		}))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { close(block) })
		c2 := dial(t, d.socket)
		o := DefaultOptions()
		o.Overrides = map[string]string{"substituters": srv.URL, "narinfo-cache-negative-ttl": "0"}
		if err := c2.SetOptions(ctx, o); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := c2.EnsurePath(cctx, cl.solo)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("EnsurePath = %v, want DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("cancellation took %v", d)
		}
		if _, err := c2.IsValidPath(ctx, cl.app); !errors.Is(err, ErrBroken) {
			t.Errorf("after cancel: %v, want ErrBroken", err)
		}
	})

	t.Run("Open", func(t *testing.T) {
		o, err := Open(ctx, "unix://"+d.socket)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		if ok, err := o.IsValidPath(ctx, cl.app); err != nil || !ok {
			t.Errorf("IsValidPath = %v, %v", ok, err)
		}
	})

	t.Run("unprivileged", func(t *testing.T) {
		testnix.RequireRoot(t)
		dir := sharedDir(t)
		var nar bytes.Buffer
		info, err := host.NarFromPath(ctx, cl.solo, &nar)
		if err != nil {
			t.Fatal(err)
		}
		info.Sigs = nil
		js, _ := json.Marshal(info)
		os.WriteFile(filepath.Join(dir, "solo.nar"), nar.Bytes(), 0o644)
		os.WriteFile(filepath.Join(dir, "solo.json"), js, 0o644)
		runAsNobody(t, "TestHelperUnprivileged",
			"NXA_SOCKET="+d.socket, "NXA_DIR="+dir, "NXA_APP="+cl.app)
	})
}

// helperEnv marks a test binary run as a helper process.
const helperEnv = "NXA_STORE_HELPER"

// runAsNobody re-runs the test binary as user nobody, running only the
// named test with helperEnv set, and fails if it fails.
func runAsNobody(t *testing.T, test string, env ...string) {
	t.Helper()
	testnix.RequireRoot(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The build directory of `go test` is private to root: copy the binary.
	// Copied by another process, so that no fork of a parallel test can
	// inherit a write descriptor of it ("text file busy" at exec).
	bin := filepath.Join(sharedDir(t), "store.test")
	if out, err := exec.Command("install", "-m", "0755", self, bin).CombinedOutput(); err != nil {
		t.Fatalf("copy the test binary: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-test.run=^"+test+"$", "-test.v", "-test.count=1")
	cmd.Dir = filepath.Dir(bin)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent", helperEnv + "=1"}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	t.Logf("helper %s as nobody:\n%s", test, out)
	if err != nil {
		t.Fatalf("helper %s failed: %v", test, err)
	}
	if !strings.Contains(string(out), "--- PASS: "+test) {
		t.Fatalf("helper %s did not pass", test)
	}
}

// TestHelperUnprivileged is the body of the unprivileged client of
// TestDaemonSocket; run directly, it does nothing.
func TestHelperUnprivileged(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		return
	}
	if os.Geteuid() == 0 {
		t.Fatal("the helper runs as root")
	}
	dir, app := os.Getenv("NXA_DIR"), os.Getenv("NXA_APP")
	ctx := ctxT(t)
	c, err := Open(ctx, "unix://"+os.Getenv("NXA_SOCKET"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// From 1.35 the daemon tells an untrusted user so; before, it does not.
	if want := map[bool]Trust{false: TrustUnknown, true: NotTrusted}[c.Protocol() >= 0x123]; c.Trust() != want {
		t.Errorf("Trust = %v at protocol %#x, want %v", c.Trust(), c.Protocol(), want)
	}
	if ok, err := c.IsValidPath(ctx, app); err != nil || !ok {
		t.Errorf("IsValidPath = %v, %v", ok, err)
	}
	if _, err := c.QueryPathInfo(ctx, app); err != nil {
		t.Error(err)
	}
	if err := c.AddTempRoot(ctx, app); err != nil {
		t.Error(err)
	}

	// An unsigned import is refused, whatever dontCheckSigs says.
	var info PathInfo
	js, _ := os.ReadFile(filepath.Join(dir, "solo.json"))
	if err := json.Unmarshal(js, &info); err != nil {
		t.Fatal(err)
	}
	nar, err := os.Open(filepath.Join(dir, "solo.nar"))
	if err != nil {
		t.Fatal(err)
	}
	defer nar.Close()
	err = c.AddToStoreNar(ctx, info, nar, false, true)
	var de *DaemonError
	if !errors.As(err, &de) || !testnix.SignatureRefused.MatchString(de.Message) {
		t.Fatalf("AddToStoreNar = %v, want a refusal for the missing signature", err)
	}
	if ok, err := c.IsValidPath(ctx, info.Path); err != nil || ok {
		t.Errorf("after the refusal: IsValidPath = %v, %v", ok, err)
	}

	// Repair is refused while the daemon reads the arguments, which ends
	// the connection in Nix 2.8.
	err = c.BuildPaths(ctx, []string{app}, BuildRepair)
	if !errors.As(err, &de) || !strings.Contains(de.Message, "repairing is not allowed") {
		t.Fatalf("BuildPaths(repair) = %v", err)
	}
	if _, err := c.IsValidPath(ctx, app); !errors.Is(err, ErrBroken) || !IsConnectionError(err) {
		t.Errorf("after a fatal error: %v, want ErrBroken", err)
	}
}

// TestCollectGarbageWaitsForGC: CollectGarbage(GCReturnLive, MaxFreed 0)
// deletes nothing and returns only when no collection holds the GC lock,
// which is what realise relies on to outlast a GC in progress.
func TestCollectGarbageWaitsForGC(t *testing.T) {
	cl := buildClosure(t)
	host := spawn(t, StdioOptions{})
	dir := t.TempDir()
	chroot := spawn(t, StdioOptions{Store: dir})
	copyPaths(t, host, chroot, cl.solo) // valid, not rooted

	start := time.Now()
	res, err := chroot.CollectGarbage(ctxT(t), GCOptions{Action: GCReturnLive})
	if err != nil || len(res.Paths) != 0 || res.BytesFreed != 0 {
		t.Fatalf("CollectGarbage = %+v, %v", res, err)
	}
	t.Logf("a sync with no GC running took %s", time.Since(start))

	// A "collection in progress": the GC lock held exclusively.
	lock, err := os.OpenFile(filepath.Join(dir, "nix/var/nix/gc.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := chroot.CollectGarbage(context.Background(), GCOptions{Action: GCReturnLive})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("CollectGarbage returned while the GC lock was held: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	released := time.Now()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("returned %s after the lock was released", time.Since(released))
	case <-time.After(10 * time.Second):
		t.Fatal("CollectGarbage did not return after the GC lock was released")
	}
	if ok, err := chroot.IsValidPath(ctxT(t), cl.solo); err != nil || !ok {
		t.Errorf("%s after CollectGarbage(GCReturnLive): valid %v, %v", cl.solo, ok, err)
	}
}

// TestRelease: Release ends the connection at once, and the child
// nix-daemon, seeing the end of its input, exits by itself and drops its
// temp roots.
func TestRelease(t *testing.T) {
	cl := buildClosure(t)
	dir := t.TempDir()
	c := spawn(t, StdioOptions{Store: dir})
	if err := c.AddTempRoot(ctxT(t), cl.app); err != nil {
		t.Fatal(err)
	}
	temproots := filepath.Join(dir, "nix/var/nix/temproots")
	if files, _ := os.ReadDir(temproots); len(files) != 1 {
		t.Fatalf("%d temp roots files while the connection is open, want 1", len(files))
	}
	if err := c.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.IsValidPath(ctxT(t), cl.app); !errors.Is(err, ErrBroken) {
		t.Errorf("a call after Release: %v, want ErrBroken", err)
	}
	select {
	case <-c.child.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the child nix-daemon did not exit after Release")
	}
	if files, _ := os.ReadDir(temproots); len(files) != 0 {
		t.Errorf("the temp roots outlived the child: %v", files)
	}
}
