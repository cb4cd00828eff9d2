package testnode

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/internal/testnix"
)

// NodeOptions configure NewNode. Nothing defaults to cache.nixos.org: a
// node without Substituters has none.
type NodeOptions struct {
	Substituters        []string // substituters
	TrustedSubstituters []string // trusted-substituters (what untrusted clients may pick)
	TrustedPublicKeys   []string // trusted-public-keys
	ExtraConf           string   // more nix.conf lines, appended last (so they win)
	// SocketInStateDir puts the daemon's socket where Nix puts it,
	// Root/nix/var/nix/daemon-socket/socket, so that clients can tell the
	// store's state directory from it, as on a real node.
	SocketInStateDir bool
}

// Node is a cluster node's Nix installation in miniature: a chroot store, its
// own NIX_CONF_DIR and HOME (so its narinfo cache starts cold), and
// optionally its own nix-daemon on a private socket. Its methods that run
// Nix take the test to fail; call them from the test's goroutine.
type Node struct {
	Dir     string // everything of the node lives under Dir
	Root    string // the chroot store: Root/nix/store, state in Root/nix/var/nix
	ConfDir string // NIX_CONF_DIR, holding nix.conf
	Home    string // HOME; the narinfo cache is Home/.cache/nix/binary-cache-v6.sqlite
	Socket  string // the daemon's socket (NIX_DAEMON_SOCKET_PATH); exists only while a daemon runs (or after it died)

	mu     sync.Mutex
	daemon *exec.Cmd
	exited chan struct{} // closed when the daemon process has been waited for
	logf   *os.File
}

// NewNode makes a node whose nix.conf is
//
//	substituters = <opts.Substituters>
//	trusted-substituters = <opts.TrustedSubstituters>
//	trusted-public-keys = <opts.TrustedPublicKeys>
//	require-sigs = true
//	narinfo-cache-negative-ttl = 0
//	sandbox = false
//	build-users-group =
//	fsync-metadata = false
//	experimental-features = nix-command
//	<opts.ExtraConf>
//
// The store is created empty on first use. Nothing runs until StartDaemon.
func NewNode(t testing.TB, opts NodeOptions) *Node {
	t.Helper()
	testnix.Require(t)
	dir := shortTempDir(t, "tn-node-")
	n := &Node{
		Dir:     dir,
		Root:    filepath.Join(dir, "root"),
		ConfDir: filepath.Join(dir, "etc"),
		Home:    filepath.Join(dir, "home"),
		Socket:  filepath.Join(dir, "daemon", "socket"),
	}
	for _, d := range []string{n.Root, n.ConfDir, n.Home} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The socket's directory must let unprivileged clients reach the socket
	// (which Nix creates 0666).
	if opts.SocketInStateDir {
		n.Socket = filepath.Join(n.Root, "nix", "var", "nix", "daemon-socket", "socket")
	}
	if err := os.MkdirAll(filepath.Dir(n.Socket), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`# written by testnode
substituters = %s
trusted-substituters = %s
trusted-public-keys = %s
require-sigs = true
narinfo-cache-negative-ttl = 0
sandbox = false
build-users-group =
fsync-metadata = false
experimental-features = nix-command
%s
`, strings.Join(opts.Substituters, " "), strings.Join(opts.TrustedSubstituters, " "),
		strings.Join(opts.TrustedPublicKeys, " "), opts.ExtraConf)
	if err := os.WriteFile(filepath.Join(n.ConfDir, "nix.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.StopDaemon()
		n.mu.Lock()
		if n.logf != nil {
			n.logf.Close()
			n.logf = nil
		}
		n.mu.Unlock()
		if t.Failed() {
			if log := n.DaemonLog(); log != "" {
				t.Logf("testnode: daemon log of %s:\n%s", n.Root, log)
			}
		}
	})
	return n
}

// Discard stops the node's daemon and removes the node now rather than
// when the test ends: a benchmark that makes a node per run would
// otherwise keep every node's store until its end.
func (n *Node) Discard(t testing.TB) {
	t.Helper()
	n.StopDaemon()
	if err := removeTree(n.Dir); err != nil {
		t.Errorf("testnode: removing %s: %v", n.Dir, err)
	}
}

// StoreURI is the node's store for `--store` / NIX_REMOTE when bypassing the
// daemon: the chroot root directory.
func (n *Node) StoreURI() string { return n.Root }

// DaemonURI is the node's daemon as a store URI: unix://Socket.
func (n *Node) DaemonURI() string { return "unix://" + n.Socket }

// Path is where a store path (/nix/store/…) of the node is on the host.
func (n *Node) Path(storePath string) string { return filepath.Join(n.Root, storePath) }

// Env is the node's variables: NIX_CONF_DIR, NIX_DAEMON_SOCKET_PATH, HOME,
// XDG_CACHE_HOME, XDG_CONFIG_HOME and XDG_CONFIG_DIRS (the last two point
// into the node, so no user nix.conf of the machine applies). It does not
// set NIX_REMOTE: an unprivileged client's "auto" store then finds the
// daemon, but root's "auto" is the HOST store, so root clients need
// NIX_REMOTE=DaemonURI() (see ClientCommand) or StoreURI(). Append it to an
// environment; the later entries win in os/exec.
func (n *Node) Env() []string {
	return []string{
		"NIX_CONF_DIR=" + n.ConfDir,
		"NIX_DAEMON_SOCKET_PATH=" + n.Socket,
		"HOME=" + n.Home,
		"XDG_CACHE_HOME=" + filepath.Join(n.Home, ".cache"),
		"XDG_CONFIG_HOME=" + filepath.Join(n.Home, ".config"),
		"XDG_CONFIG_DIRS=" + filepath.Join(n.Dir, "xdg"),
	}
}

// Environ is a complete environment for the node: this process's, without
// its NIX_*, XDG_* and HOME variables, plus Env().
func (n *Node) Environ() []string { return append(baseEnv(), n.Env()...) }

// Command runs a program as this process's user (root in CI) on the node's
// store directly, as single-user Nix would: Environ() plus
// NIX_REMOTE=StoreURI().
func (n *Node) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = append(n.Environ(), "NIX_REMOTE="+n.StoreURI())
	return cmd
}

// ClientCommand runs a program as this process's user (a trusted client
// when root) through the node's daemon: Environ() plus
// NIX_REMOTE=DaemonURI().
func (n *Node) ClientCommand(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = append(n.Environ(), "NIX_REMOTE="+n.DaemonURI())
	return cmd
}

// StartDaemon starts `nix-daemon --store Root` listening on Socket, with the
// node's environment, and waits (at most 15 s) until it accepts
// connections. Its output goes to DaemonLog. It is stopped when the test
// ends.
func (n *Node) StartDaemon(t testing.TB) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.daemon != nil {
		t.Fatalf("testnode: the daemon of %s is already running", n.Root)
	}
	if n.logf == nil {
		f, err := os.OpenFile(filepath.Join(n.Dir, "daemon.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		n.logf = f
	}
	fmt.Fprintf(n.logf, "--- testnode: starting nix-daemon at %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command("nix-daemon", "--store", n.Root)
	cmd.Env = n.Environ()
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = n.logf, n.logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("testnode: starting nix-daemon: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	n.daemon, n.exited = cmd, exited

	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			n.daemon = nil
			t.Fatalf("testnode: nix-daemon for %s exited at start (%v); log:\n%s", n.Root, cmd.ProcessState, n.DaemonLog())
		default:
		}
		err := handshake(n.Socket)
		if err == nil {
			return
		}
		var de *daemonError
		if errors.As(err, &de) {
			n.stopLocked(syscall.SIGKILL)
			t.Fatalf("testnode: nix-daemon for %s: %v; log:\n%s", n.Root, err, n.DaemonLog())
		}
		if time.Now().After(deadline) {
			n.stopLocked(syscall.SIGKILL)
			t.Fatalf("testnode: nix-daemon for %s did not accept connections on %s within 15s (%v); log:\n%s", n.Root, n.Socket, err, n.DaemonLog())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// daemonError is an error the daemon itself reported.
type daemonError struct{ msg string }

func (e *daemonError) Error() string { return "the daemon answered: " + e.msg }

// handshake opens a connection to the daemon at socket, performs the worker
// protocol's handshake (as a 1.34 client) up to the daemon's STDERR_LAST,
// and closes it cleanly, which proves the daemon opened its store and
// serves, without leaving "unexpected end-of-file" in its log.
func handshake(socket string) error {
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	const (
		magic1      = 0x6e697863
		magic2      = 0x6478696f
		version     = 0x122 // 1.34, Nix 2.8's own
		stderrNext  = 0x6f6c6d67
		stderrLast  = 0x616c7473
		stderrError = 0x63787470
	)
	var req [32]byte
	binary.LittleEndian.PutUint64(req[0:], magic1)
	binary.LittleEndian.PutUint64(req[8:], version)
	// req[16:32]: obsolete CPU affinity and reserveSpace, both 0.
	if _, err := c.Write(req[:]); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	u64 := func() (uint64, error) {
		var b [8]byte
		_, err := io.ReadFull(r, b[:])
		return binary.LittleEndian.Uint64(b[:]), err
	}
	str := func() (string, error) {
		n, err := u64()
		if err != nil {
			return "", err
		}
		if n > 1<<20 {
			return "", fmt.Errorf("string of %d bytes in the handshake", n)
		}
		b := make([]byte, (n+7)&^7)
		if _, err := io.ReadFull(r, b); err != nil {
			return "", err
		}
		return string(b[:n]), nil
	}
	if m, err := u64(); err != nil || m != magic2 {
		return fmt.Errorf("bad handshake (magic %#x, %v)", m, err)
	}
	dv, err := u64()
	if err != nil {
		return err
	}
	if min(dv, version)&0xff >= 33 {
		if _, err := str(); err != nil {
			return err
		}
	}
	for {
		tag, err := u64()
		if err != nil {
			return err
		}
		switch tag {
		case stderrLast:
			return nil
		case stderrNext:
			if _, err := str(); err != nil {
				return err
			}
		case stderrError:
			// ≥ 1.26: "Error", level, name, message, ...
			var parts []string
			for i := 0; i < 4; i++ {
				if i == 1 {
					if _, err := u64(); err != nil {
						return err
					}
					continue
				}
				s, err := str()
				if err != nil {
					return err
				}
				parts = append(parts, s)
			}
			return &daemonError{msg: parts[len(parts)-1]}
		default:
			return fmt.Errorf("unexpected message %#x in the handshake", tag)
		}
	}
}

// DaemonRunning reports whether the daemon started by StartDaemon is alive.
func (n *Node) DaemonRunning() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.daemon == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// DaemonPID is the daemon's process id (0 when none runs).
func (n *Node) DaemonPID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.daemon == nil {
		return 0
	}
	return n.daemon.Process.Pid
}

// StopDaemon stops the daemon: its per-connection workers (which Nix puts
// in their own sessions, and which ignore SIGTERM) get SIGKILL, so open
// client connections are closed; then the daemon gets SIGTERM (the harness
// connects to the socket until it notices), and SIGKILL if it has not
// exited 10 s later. The socket file stays, as after a real stop. A no-op
// when no daemon runs.
func (n *Node) StopDaemon() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stopLocked(syscall.SIGTERM)
}

// KillDaemon simulates a crash: SIGKILL to all the daemon's workers, then
// to the daemon, within milliseconds, so clients see their connections drop
// mid-request and new connections refused until StartDaemon. Temp-roots
// files and the socket file are left behind, as after a real crash.
func (n *Node) KillDaemon() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stopLocked(syscall.SIGKILL)
}

// RestartDaemon stops the daemon (SIGTERM) and starts a new one on the same
// socket.
func (n *Node) RestartDaemon(t testing.TB) {
	t.Helper()
	n.StopDaemon()
	n.StartDaemon(t)
}

func (n *Node) stopLocked(sig syscall.Signal) {
	if n.daemon == nil {
		return
	}
	pid := n.daemon.Process.Pid
	select {
	case <-n.exited:
		// It died on its own and was reaped: its pid may be reused, so
		// signal nothing.
	default:
		// Freeze the daemon so it forks no new worker while we collect
		// them (Nix gives each worker its own session).
		_ = syscall.Kill(pid, syscall.SIGSTOP)
		// The workers go first, while their parent still reaps them:
		// orphans become zombies wherever PID 1 does not reap. They get
		// SIGKILL: Nix 2.8's workers were seen to ignore SIGTERM.
		workers := descendants(pid)
		for _, w := range workers {
			_ = syscall.Kill(w.pid, syscall.SIGKILL)
		}
		waitGone(workers, 10*time.Second)
		_ = syscall.Kill(-pid, sig) // the daemon's process group
		_ = syscall.Kill(pid, syscall.SIGCONT)
		// Nix 2.8's daemon was seen to sit in accept() after SIGTERM until
		// the next connection (its signal thread only sets a flag), so
		// knock on the socket until it exits.
		deadline := time.Now().Add(10 * time.Second)
	wait:
		for {
			select {
			case <-n.exited:
				break wait
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
				<-n.exited
				break
			}
			if c, err := net.DialTimeout("unix", n.Socket, 100*time.Millisecond); err == nil {
				c.Close()
			}
		}
	}
	n.daemon = nil
	if n.logf != nil {
		fmt.Fprintf(n.logf, "--- testnode: nix-daemon stopped (signal %v) at %s\n", sig, time.Now().Format(time.RFC3339Nano))
	}
}

// proc identifies a process: its pid and its start time (so that a reused
// pid is never signalled).
type proc struct {
	pid   int
	start string
}

// procStat returns p's parent, state and start time from /proc/p/stat.
func procStat(p int) (ppid int, state byte, start string, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/stat")
	if err != nil {
		return 0, 0, "", false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, "", false
	}
	// After the command: state ppid pgrp session tty tpgid flags minflt
	// cminflt majflt cmajflt utime stime cutime cstime priority nice
	// num_threads itrealvalue starttime ...
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, "", false
	}
	pp, err := strconv.Atoi(f[1])
	return pp, f[0][0], f[19], err == nil
}

// descendants lists the processes below pid (read from /proc).
func descendants(pid int) []proc {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]proc{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, _, start, ok := procStat(p); ok {
			children[pp] = append(children[pp], proc{p, start})
		}
	}
	var out []proc
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c.pid)
		}
	}
	return out
}

// alive reports whether p still runs (zombies count as gone).
func alive(p proc) bool {
	_, state, start, ok := procStat(p.pid)
	return ok && start == p.start && state != 'Z'
}

// waitGone waits at most d until the processes are gone (or zombies).
func waitGone(procs []proc, d time.Duration) {
	deadline := time.Now().Add(d)
	for _, p := range procs {
		for alive(p) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// DaemonLog is everything the node's daemons wrote so far.
func (n *Node) DaemonLog() string {
	b, _ := os.ReadFile(filepath.Join(n.Dir, "daemon.log"))
	return string(b)
}

// NixStore runs `nix-store --store Root ARGS...` as this process's user and
// returns its stdout; a failure fails the test.
func (n *Node) NixStore(t testing.TB, args ...string) string {
	t.Helper()
	return mustRun(t, n.Environ(), "nix-store", append([]string{"--store", n.Root}, args...)...)
}

// Valid reports whether path is a valid path of the node's store.
func (n *Node) Valid(t testing.TB, path string) bool {
	t.Helper()
	return len(n.Invalid(t, path)) == 0
}

// Invalid returns those of paths that are not valid in the node's store.
func (n *Node) Invalid(t testing.TB, paths ...string) []string {
	t.Helper()
	if len(paths) == 0 {
		return nil
	}
	return lines(n.NixStore(t, append([]string{"--check-validity", "--print-invalid"}, paths...)...))
}

// ValidPaths lists every valid path of the node's store, sorted.
func (n *Node) ValidPaths(t testing.TB) []string {
	t.Helper()
	out := mustRun(t, n.Environ(), "nix", "--experimental-features", "nix-command",
		"path-info", "--store", n.Root, "--all")
	p := lines(out)
	sort.Strings(p)
	return p
}

// verifyNoise is what a clean `nix-store --verify` prints.
var verifyNoise = map[string]bool{
	"reading the Nix store...":   true,
	"checking path existence...": true,
	"checking link hashes...":    true,
	"checking store hashes...":   true,
}

// Verify runs `nix-store --verify --check-contents` on the node's store and
// fails the test on a non-zero exit or on any output beyond its progress
// lines (such as "path '…' was modified!").
func (n *Node) Verify(t testing.TB) {
	t.Helper()
	r := run(n.Environ(), "", "nix-store", "--store", n.Root, "--verify", "--check-contents")
	var bad []string
	for _, l := range lines(r.stdout + "\n" + r.stderr) {
		if !verifyNoise[l] {
			bad = append(bad, l)
		}
	}
	if r.err != nil || len(bad) > 0 {
		t.Fatalf("testnode: the store of %s fails verification (%v):\n%s", n.Root, r.err, strings.Join(bad, "\n"))
	}
}

// GC runs `nix-store --gc` on the node's store and returns what it deleted
// (store paths, including invalid leftovers), as it printed them.
func (n *Node) GC(t testing.TB) []string {
	t.Helper()
	r := run(n.Environ(), "", "nix-store", "--store", n.Root, "--gc")
	if r.err != nil {
		t.Fatalf("testnode: nix-store --gc on %s: %v\n%s", n.Root, r.err, r.stderr)
	}
	var deleted []string
	for _, l := range lines(r.stderr) {
		if p, ok := strings.CutPrefix(l, "deleting '"); ok && strings.HasSuffix(p, "'") {
			deleted = append(deleted, strings.TrimSuffix(p, "'"))
		}
	}
	sort.Strings(deleted)
	return deleted
}

// Root is a GC root: Link (a symlink, or "{temp:PID}" and the like for
// runtime roots) keeps Path alive.
type Root struct {
	Link string
	Path string
}

// Roots lists the node's GC roots (`nix-store --gc --print-roots`, in the
// format of any Nix version, see parseRoot). Note that Nix 2.8 deletes
// stale links from gcroots/auto while doing so.
func (n *Node) Roots(t testing.TB) []Root {
	t.Helper()
	var roots []Root
	for _, l := range lines(n.NixStore(t, "--gc", "--print-roots")) {
		if r, ok := parseRoot(l); ok {
			roots = append(roots, r)
		}
	}
	return roots
}

// Copy copies paths and their closures from the host store into the node's
// store, without checking signatures (copied paths carry the host's, usually
// none), to make an "already valid" node.
func (n *Node) Copy(t testing.TB, paths ...string) {
	t.Helper()
	if len(paths) == 0 {
		return
	}
	// Not n.Environ(): its NIX_DAEMON_SOCKET_PATH could make the source
	// store (the default one) the node's daemon for a non-root user.
	mustRun(t, append(baseEnv(), "HOME="+n.Home), "nix", append([]string{"--experimental-features", "nix-command",
		"copy", "--no-check-sigs", "--to", n.Root}, paths...)...)
}
