package main

// Integration tests of the nix-init binary: the static binary built by
// nixInitBinary runs as a subprocess, as the user nobody, in a sandbox
// directory, against hermetic nodes (a chroot store with its own
// nix-daemon) and binary caches served on 127.0.0.1 with fault injection.
// Real Nix everywhere; nothing is mocked.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/gcroots"
	"github.com/nix-aurora/nix-aurora/internal/testnix"
	"github.com/nix-aurora/nix-aurora/internal/testnode"
	"github.com/nix-aurora/nix-aurora/realise"
)

// rig is one scenario's world: a fixture closure in a cache, a node whose
// daemon substitutes from it, a sandbox, and nix-init where nobody can run
// it.
type rig struct {
	fx    *testnode.Fixture
	cache *testnode.Cache
	node  *testnode.Node
	sb    *testnode.Sandbox
	bin   string
	via   string // --via for every run, "" for the default
}

type rigOptions struct {
	depth, width, bytes int
	noDaemon            bool // do not start the node's daemon
	nodeSubstituters    bool // false: the node's nix.conf names no cache
	extraConf           string
	socketInStateDir    bool // the daemon's socket where Nix puts it
}

// newRig builds a fixture (depth levels of width paths of bytes bytes, plus
// the root), a signed cache holding it, a node trusting the cache's key,
// with its daemon started, and a sandbox.
func newRig(t *testing.T, name string, o rigOptions) *rig {
	t.Helper()
	testnix.Require(t)
	testnix.RequireRoot(t)
	if o.depth == 0 {
		o.depth, o.width, o.bytes = 3, 2, 16<<10
	}
	r := &rig{}
	r.fx = testnode.Chain(t, name, o.depth, o.width, o.bytes)
	r.cache = testnode.NewCache(t, testnode.CacheOptions{}, r.fx.Root)
	opts := testnode.NodeOptions{ExtraConf: o.extraConf, SocketInStateDir: o.socketInStateDir}
	if o.nodeSubstituters {
		opts.Substituters = []string{r.cache.URL}
		opts.TrustedPublicKeys = []string{r.cache.PublicKey}
	}
	r.node = testnode.NewNode(t, opts)
	if !o.noDaemon {
		r.node.StartDaemon(t)
	}
	r.sb = testnode.NewSandbox(t, r.node)
	r.bin = r.sb.CopyExecutable(t, nixInitBinary(t))
	return r
}

// daemonRig is the common case: the node's nix.conf names the cache.
func daemonRig(t *testing.T, name string) *rig {
	return newRig(t, name, rigOptions{nodeSubstituters: true})
}

// cmd runs nix-init as nobody in the sandbox, through the node's daemon
// (auto mode finds it: nobody cannot write the host's /nix/var/nix).
func (r *rig) cmd(args ...string) *exec.Cmd {
	if r.via != "" {
		args = append([]string{"--via", r.via}, args...)
	}
	return r.sb.Command(r.bin, args...)
}

// vias are nix-init's two ways to substitute: direct (its default when
// caches and signatures are configured: it fetches and checks the NARs
// itself and imports them) and daemon (the store substitutes, as
// nix-store -r does). They fail differently, so the fault scenarios run
// with both.
var vias = []string{"direct", "daemon"}

// eachVia runs fn as a parallel subtest per way of substituting.
func eachVia(t *testing.T, fn func(t *testing.T, via string)) {
	for _, via := range vias {
		t.Run(via, func(t *testing.T) {
			t.Parallel()
			fn(t, via)
		})
	}
}

// link is the absolute path of the root link NAME in the sandbox, as the
// daemon records it.
func (r *rig) link(t *testing.T, name string) string {
	t.Helper()
	dir, err := filepath.EvalSymlinks(r.sb.Dir)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, ".gc", name)
}

// autoLink is where the node registers an indirect root.
func (r *rig) autoLink(link string) string {
	return filepath.Join(r.node.Root, "nix/var/nix/gcroots/auto", gcroots.AutoName(link))
}

func (r *rig) readReport(t *testing.T, file string) *realise.Report {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(r.sb.Dir, file))
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	var rep realise.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatalf("report %s: %v\n%s", file, err, data)
	}
	return &rep
}

// syncBuffer is a bytes.Buffer safe for a writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a running nix-init.
type proc struct {
	cmd    *exec.Cmd
	stdout syncBuffer
	stderr syncBuffer
	start  time.Time
	done   chan struct{}
	err    error
}

// result is how a nix-init run ended.
type result struct {
	code           int
	stdout, stderr string
	elapsed        time.Duration
}

func start(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &p.stdout, &p.stderr
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", strings.Join(cmd.Args, " "), err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits at most limit for the process to exit; a process killed by a
// signal, or still running at the limit (then killed), fails the test.
func (p *proc) wait(t *testing.T, limit time.Duration) result {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(limit):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("nix-init still running after %s; killed. stderr:\n%s", limit, p.stderr.String())
	}
	res := result{code: p.cmd.ProcessState.ExitCode(), stdout: p.stdout.String(), stderr: p.stderr.String(), elapsed: time.Since(p.start)}
	var ee *exec.ExitError
	if p.err != nil && !errors.As(p.err, &ee) {
		t.Fatalf("nix-init: %v\nstderr:\n%s", p.err, res.stderr)
	}
	if res.code < 0 {
		t.Fatalf("nix-init ended by %v\nstderr:\n%s", p.cmd.ProcessState, res.stderr)
	}
	t.Logf("%s: exit %d in %s\nstderr:\n%s", filepath.Base(p.cmd.Args[0]), res.code, res.elapsed.Round(time.Millisecond), res.stderr)
	return res
}

func runInit(t *testing.T, cmd *exec.Cmd, limit time.Duration) result {
	t.Helper()
	return start(t, cmd).wait(t, limit)
}

func wantCode(t *testing.T, res result, code int) {
	t.Helper()
	if res.code != code {
		t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", res.code, code, res.stdout, res.stderr)
	}
}

// waitFor polls cond every 10 ms for at most limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// narRequested reports whether the cache has been asked for a NAR.
func narRequested(c *testnode.Cache) func() bool {
	return func() bool { return c.Count("/nar/") > 0 }
}

// lines splits output into its non-empty lines.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// checkRooted checks that .gc/NAME points at path and is registered with
// the node.
func (r *rig) checkRooted(t *testing.T, name, path string) {
	t.Helper()
	link := r.link(t, name)
	target, err := os.Readlink(link)
	if err != nil || target != path {
		t.Errorf(".gc/%s -> %q (%v), want %s", name, target, err, path)
	}
	auto := r.autoLink(link)
	if got, err := os.Readlink(auto); err != nil || got != link {
		t.Errorf("registration %s -> %q (%v), want %s", auto, got, err, link)
	}
}

// storeClosure is the closure of paths in the node's store.
func storeClosure(t *testing.T, n *testnode.Node, paths ...string) []string {
	t.Helper()
	return lines(n.NixStore(t, append([]string{"-qR"}, paths...)...))
}

var fetchedLine = regexp.MustCompile(`^\S+ nix-init: fetched (/nix/store/\S+) from (\S+) \(`)

// TestDaemonMode realises a closure of several levels as nobody through the
// node's daemon, then checks the roots, their registration, the GC's view
// with and without the sandbox, the log and the report.
func TestDaemonMode(t *testing.T) {
	t.Parallel()
	eachVia(t, testDaemonMode)
}

func testDaemonMode(t *testing.T, via string) {
	r := daemonRig(t, "daemon-mode-"+via)
	r.via = via
	leaf := r.fx.Levels[0][1]
	res := runInit(t, r.cmd("--report", "report.json", "app="+r.fx.Root, leaf), 20*time.Second)
	wantCode(t, res, exitOK)

	r.checkRooted(t, "app", r.fx.Root)
	r.checkRooted(t, filepath.Base(leaf), leaf)
	if bad := r.node.Invalid(t, r.fx.Closure...); len(bad) > 0 {
		t.Fatalf("not valid after nix-init: %v", bad)
	}

	// The log: "fetching N paths", one line per path, the summary.
	var fetched []string
	ls := lines(res.stderr)
	for _, l := range ls {
		if m := fetchedLine.FindStringSubmatch(l); m != nil {
			fetched = append(fetched, m[1])
			if m[2] != r.cache.URL {
				t.Errorf("fetched from %s, want %s: %s", m[2], r.cache.URL, l)
			}
		}
	}
	sort.Strings(fetched)
	want := slices.Clone(r.fx.Closure)
	sort.Strings(want)
	if !slices.Equal(fetched, want) {
		t.Errorf("fetched lines name %v\nwant the closure %v", fetched, want)
	}
	if len(ls) != len(want)+2 {
		t.Errorf("stderr has %d lines, want %d (fetching, one per path, summary)", len(ls), len(want)+2)
	}
	if !strings.Contains(ls[0], "nix-init: fetching 7 paths (") {
		t.Errorf("first line %q", ls[0])
	}
	if last := ls[len(ls)-1]; !regexp.MustCompile(`nix-init: 2 roots in \.gc: fetched 7 paths \(.+\) in [0-9.]+s, 0 retries$`).MatchString(last) {
		t.Errorf("summary line %q", last)
	}

	rep := r.readReport(t, "report.json")
	if rep.Outcome != "ok" || rep.Retries != 0 || rep.Error != "" {
		t.Errorf("report: outcome %q, retries %d, error %q", rep.Outcome, rep.Retries, rep.Error)
	}
	if rep.DaemonVersion != testnix.Version(t) || rep.Store != r.node.DaemonURI() {
		t.Errorf("report: daemon %q, store %q", rep.DaemonVersion, rep.Store)
	}
	var sum uint64
	var got []string
	for _, p := range rep.Substituted {
		got = append(got, p.Path)
		if p.Bytes == 0 || p.From != r.cache.URL {
			t.Errorf("report: substituted %+v", p)
		}
		sum += p.Bytes
	}
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("report: substituted %v, want %v", got, want)
	}
	if sum != rep.DownloadBytes || sum < 6*(16<<10) { // six paths of 16 KiB of random data

		t.Errorf("report: download_bytes %d, sum of paths %d", rep.DownloadBytes, sum)
	}
	if len(rep.Roots) != 2 || rep.Roots[0].Link != r.link(t, "app") || rep.Roots[0].WasValid || rep.Roots[1].Path != leaf {
		t.Errorf("report: roots %+v", rep.Roots)
	}

	// The GC keeps the closure while the sandbox lives...
	r.node.GC(t)
	if bad := r.node.Invalid(t, r.fx.Closure...); len(bad) > 0 {
		t.Fatalf("GC collected rooted paths: %v", bad)
	}
	// ...and collects it once the sandbox is gone.
	appLink := r.link(t, "app")
	if err := os.RemoveAll(r.sb.Dir); err != nil {
		t.Fatal(err)
	}
	deleted := r.node.GC(t)
	for _, p := range r.fx.Closure {
		if !slices.Contains(deleted, p) {
			t.Errorf("GC after the sandbox went did not delete %s (deleted %v)", p, deleted)
		}
	}
	if _, err := os.Lstat(r.autoLink(appLink)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale registration left after GC: %v", err)
	}
}

// TestSingleUserMode: the store belongs to nobody, who runs nix-init with
// its own nix-daemon --stdio; caches and keys come from flags, as the
// node's nix.conf names none.
func TestSingleUserMode(t *testing.T) {
	t.Parallel()
	eachVia(t, testSingleUserMode)
}

func testSingleUserMode(t *testing.T, via string) {
	r := newRig(t, "single-user-"+via, rigOptions{noDaemon: true})
	fx2 := testnode.Chain(t, "single-user-auto-"+via, 2, 1, 4096)
	r.cache.Add(t, fx2.Root)
	if out, err := exec.Command("chown", "-R", "nobody:", r.node.Root).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	nixDaemon, err := exec.LookPath("nix-daemon")
	if err != nil {
		t.Fatal(err)
	}
	flags := []string{"--via", via, "--substituter", r.cache.URL, "--trusted-public-key", r.cache.PublicKey}

	// An explicit chroot store.
	res := runInit(t, r.cmd(append(flags, "--store", r.node.Root, "--nix-daemon", nixDaemon, "-v", "app="+r.fx.Root)...), 20*time.Second)
	wantCode(t, res, exitOK)
	if !strings.Contains(res.stderr, "store "+r.node.Root+" (local mode)") {
		t.Errorf("nix-init -v did not say it uses %s in local mode", r.node.Root)
	}
	r.checkRooted(t, "app", r.fx.Root)

	// Auto mode where the store's state directory is writable: in a mount
	// namespace with the node's store on /nix, nix-init must find it
	// local (found on PATH=/usr/bin:/bin), not look for a daemon.
	res = runInit(t, r.sb.BindCommand(r.bin, append(flags, "-v", "auto="+fx2.Root)...), 20*time.Second)
	wantCode(t, res, exitOK)
	if !strings.Contains(res.stderr, "store local (local mode)") {
		t.Errorf("auto mode did not pick the writable local store")
	}
	r.checkRooted(t, "auto", fx2.Root)

	// The store trusts its owner: here nix-init is the one that refuses
	// paths signed by a key it was not told to trust.
	fx3 := testnode.Chain(t, "single-user-untrusted-"+via, 1, 1, 1024)
	r.cache.Add(t, fx3.Root)
	other := testnode.NewCache(t, testnode.CacheOptions{})
	res = runInit(t, r.cmd("--via", via, "--substituter", r.cache.URL, "--trusted-public-key", other.PublicKey,
		"--store", r.node.Root, "--nix-daemon", nixDaemon, "untrusted="+fx3.Root), 20*time.Second)
	wantCode(t, res, exitPermanent)
	if !strings.Contains(res.stderr, "not signed by any") {
		t.Errorf("the error does not say the signature is not trusted")
	}

	// Checked as the store's owner: root would leave files nobody cannot
	// write in the store's state directory.
	checkValidity := func(paths ...string) []string {
		t.Helper()
		check := r.sb.Command("nix-store", append([]string{"--store", r.node.Root, "--check-validity", "--print-invalid"}, paths...)...)
		out, err := check.Output()
		if err != nil {
			t.Fatalf("nix-store --check-validity: %v %s", err, errText(err))
		}
		return lines(string(out))
	}
	if bad := checkValidity(append(slices.Clone(r.fx.Closure), fx2.Closure...)...); len(bad) > 0 {
		t.Errorf("not valid: %v", bad)
	}
	if bad := checkValidity(fx3.Closure...); len(bad) != len(fx3.Closure) {
		t.Errorf("imported without a trusted signature: %d of %d paths", len(fx3.Closure)-len(bad), len(fx3.Closure))
	}
}

// TestAllValid: when every root is valid already, nix-init asks no cache
// and prints nothing.
func TestAllValid(t *testing.T) {
	t.Parallel()
	r := daemonRig(t, "all-valid")
	r.node.Copy(t, r.fx.Root)
	res := runInit(t, r.cmd("--report", "report.json", "app="+r.fx.Root), 20*time.Second)
	wantCode(t, res, exitOK)
	if res.stderr != "" || res.stdout != "" {
		t.Errorf("output when all is valid:\nstdout: %q\nstderr: %q", res.stdout, res.stderr)
	}
	if reqs := r.cache.Requests(); len(reqs) > 0 {
		t.Errorf("the cache was asked %v", reqs)
	}
	r.checkRooted(t, "app", r.fx.Root)
	rep := r.readReport(t, "report.json")
	if rep.Outcome != "ok" || len(rep.Substituted) != 0 || !rep.Roots[0].WasValid {
		t.Errorf("report %+v", rep)
	}
}

// TestNotInAnyCache: a path no cache has fails at once, naming the path and
// the caches asked.
func TestNotInAnyCache(t *testing.T) {
	t.Parallel()
	r := daemonRig(t, "not-in-cache")
	missing := fakePath(r.fx.Root)
	res := runInit(t, r.cmd("--report", "report.json", r.fx.Root, missing), 20*time.Second)
	wantCode(t, res, exitPermanent)
	if res.elapsed > 5*time.Second {
		t.Errorf("a permanent failure took %s", res.elapsed)
	}
	for _, s := range []string{missing, r.cache.URL, "error:"} {
		if !strings.Contains(res.stderr, s) {
			t.Errorf("the error does not mention %q", s)
		}
	}
	if strings.Contains(res.stderr, "retrying") {
		t.Errorf("a permanent failure was retried")
	}
	rep := r.readReport(t, "report.json")
	if rep.Outcome != "failed" || rep.Retries != 0 || !strings.Contains(rep.Error, missing) {
		t.Errorf("report: %+v", rep)
	}
}

// fakePath is p with another hash: a valid-looking store path nobody built.
func fakePath(p string) string {
	b := []byte(p)
	i := len("/nix/store/")
	if b[i] == '0' {
		b[i] = '1'
	} else {
		b[i] = '0'
	}
	return string(b)
}

// TestDaemonRestart: the daemon is killed (SIGKILL) while a download is
// under way and comes back half a second later; nix-init carries on and
// succeeds within its budget.
func TestDaemonRestart(t *testing.T) {
	t.Parallel()
	eachVia(t, func(t *testing.T, via string) {
		r := daemonRig(t, "daemon-restart-"+via)
		r.via = via
		r.cache.StallBodyMatching("/nar/", 5*time.Second)
		p := start(t, r.cmd("--timeout", "30s", "--report", "report.json", "app="+r.fx.Root))
		waitFor(t, 15*time.Second, "NAR request", narRequested(r.cache))
		r.node.KillDaemon()
		time.Sleep(500 * time.Millisecond)
		r.cache.StallBody(0)
		r.node.RestartDaemon(t)
		res := p.wait(t, 20*time.Second)
		wantCode(t, res, exitOK)
		rep := r.readReport(t, "report.json")
		if rep.Retries < 1 || rep.Outcome != "ok" {
			t.Errorf("report: outcome %q, %d retries", rep.Outcome, rep.Retries)
		}
		if res.elapsed > 15*time.Second {
			t.Errorf("took %s", res.elapsed)
		}
		r.checkRooted(t, "app", r.fx.Root)
		if bad := r.node.Invalid(t, r.fx.Closure...); len(bad) > 0 {
			t.Fatalf("not valid: %v", bad)
		}
		r.node.Verify(t)
	})
}

// TestCache503: the cache answers 503 for a while; nix-init retries on a
// fresh connection and succeeds within its budget. The node lets a
// download be tried only twice (download-attempts; the default, 5 with
// backoff, would ride out a 3 s outage by itself), so that the failure
// reaches nix-init: while it plans (narinfo, and nix-cache-info), and while
// the NARs download, where the daemon reports just "build of ... failed"
// with the 503 only in its log.
func TestCache503(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		fault func(c *testnode.Cache)
	}{
		{"narinfo", func(c *testnode.Cache) { c.FailFor(503, 3*time.Second) }},
		// Every NAR of the closure (7) fails twice: direct fetches them all
		// at once; the daemon fetches them level by level.
		{"nar", func(c *testnode.Cache) { c.FailMatching("/nar/", 503, 14) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			eachVia(t, func(t *testing.T, via string) {
				r := newRig(t, "cache-503-"+tc.name+"-"+via, rigOptions{nodeSubstituters: true, extraConf: "download-attempts = 2\n"})
				r.via = via
				tc.fault(r.cache)
				res := runInit(t, r.cmd("--timeout", "30s", "--report", "report.json", "app="+r.fx.Root), 25*time.Second)
				wantCode(t, res, exitOK)
				rep := r.readReport(t, "report.json")
				if rep.Outcome != "ok" || rep.Retries < 1 {
					t.Errorf("report: outcome %q, %d retries", rep.Outcome, rep.Retries)
				}
				if res.elapsed > 15*time.Second {
					t.Errorf("took %s", res.elapsed)
				}
				if !regexp.MustCompile(`transient failure, retrying in .*HTTP (error )?503`).MatchString(res.stderr) {
					t.Errorf("the log does not say that a 503 was retried")
				}
				if r.cache.Count("/nar/") == 0 || len(r.node.Invalid(t, r.fx.Closure...)) > 0 {
					t.Errorf("closure not fetched")
				}
				r.checkRooted(t, "app", r.fx.Root)
			})
		})
	}
}

// TestBadSignature: a cache whose key the node does not trust is a
// permanent failure that says so, and nothing is imported.
func TestBadSignature(t *testing.T) {
	t.Parallel()
	eachVia(t, func(t *testing.T, via string) {
		r := newRig(t, "bad-signature-"+via, rigOptions{})
		other := testnode.NewCache(t, testnode.CacheOptions{})
		node := testnode.NewNode(t, testnode.NodeOptions{
			Substituters:      []string{r.cache.URL},
			TrustedPublicKeys: []string{other.PublicKey},
		})
		node.StartDaemon(t)
		sb := testnode.NewSandbox(t, node)
		res := runInit(t, sb.Command(r.bin, "--via", via, "--timeout", "30s", "app="+r.fx.Root), 20*time.Second)
		wantCode(t, res, exitPermanent)
		if res.elapsed > 5*time.Second || strings.Contains(res.stderr, "transient failure") {
			t.Errorf("a permanent failure was retried (%s)", res.elapsed)
		}
		if !regexp.MustCompile(`error: .*` + regexp.QuoteMeta(r.fx.Root) + `.*not signed by any`).MatchString(res.stderr) {
			t.Errorf("the error does not name the path and the signature problem")
		}
		if !strings.Contains(res.stderr, r.cache.URL) {
			t.Errorf("the error does not name the cache")
		}
		if bad := node.Invalid(t, r.fx.Closure...); len(bad) != len(r.fx.Closure) {
			t.Errorf("paths imported without a trusted signature: %d of %d are valid", len(r.fx.Closure)-len(bad), len(r.fx.Closure))
		}
	})
}

// TestCacheDownGivesUp: a cache down for longer than --timeout makes
// nix-init give up (exit 3) in about that time, saying why.
func TestCacheDownGivesUp(t *testing.T) {
	t.Parallel()
	eachVia(t, func(t *testing.T, via string) {
		r := daemonRig(t, "cache-down-"+via)
		r.via = via
		if err := r.cache.SetDown(true); err != nil {
			t.Fatal(err)
		}
		const timeout = 4 * time.Second
		res := runInit(t, r.cmd("--timeout", timeout.String(), "--report", "report.json", "app="+r.fx.Root), 20*time.Second)
		wantCode(t, res, exitGaveUp)
		if res.elapsed < timeout || res.elapsed > timeout+3*time.Second {
			t.Errorf("gave up after %s, want about %s", res.elapsed, timeout)
		}
		final := lines(res.stderr)[len(lines(res.stderr))-1]
		if !strings.Contains(final, "error: gave up") || !strings.Contains(final, r.cache.URL) ||
			!(testnix.CannotConnect.MatchString(final) || strings.Contains(final, "connection refused")) {
			t.Errorf("the last line does not say it gave up, on which cache, and why:\n%s", final)
		}
		rep := r.readReport(t, "report.json")
		if rep.Outcome != "gave-up" {
			t.Errorf("report: outcome %q", rep.Outcome)
		}
	})
}

// TestKilledMidSubstitution: nix-init killed (SIGKILL) while NARs download
// leaves nothing broken: once the cache is healthy again, a second run
// succeeds and the store verifies.
func TestKilledMidSubstitution(t *testing.T) {
	t.Parallel()
	eachVia(t, func(t *testing.T, via string) {
		r := daemonRig(t, "killed-mid-"+via)
		r.via = via
		r.cache.StallBodyMatching("/nar/", 10*time.Second)
		p := start(t, r.cmd("app="+r.fx.Root))
		waitFor(t, 15*time.Second, "NAR request", narRequested(r.cache))
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.done
		r.cache.StallBody(0)
		res := runInit(t, r.cmd("app="+r.fx.Root), 20*time.Second)
		wantCode(t, res, exitOK)
		r.checkRooted(t, "app", r.fx.Root)
		if bad := r.node.Invalid(t, r.fx.Closure...); len(bad) > 0 {
			t.Fatalf("not valid: %v", bad)
		}
		r.node.Verify(t)
	})
}

// TestConcurrentGC: GCs run on the node while nix-init realises; what
// nix-init reported rooted survives the next GC, closures included.
func TestConcurrentGC(t *testing.T) {
	t.Parallel()
	eachVia(t, testConcurrentGC)
}

// TestConcurrentGCProbe: with the daemon's socket where Nix puts it,
// nix-init knows the store's state directory and probes the GC socket
// instead of waiting for the GC lock; a GC in progress must still be seen.
func TestConcurrentGCProbe(t *testing.T) {
	t.Parallel()
	testConcurrentGCWith(t, "direct", rigOptions{nodeSubstituters: true, socketInStateDir: true})
}

func testConcurrentGC(t *testing.T, via string) {
	testConcurrentGCWith(t, via, rigOptions{nodeSubstituters: true})
}

func testConcurrentGCWith(t *testing.T, via string, o rigOptions) {
	name := "concurrent-gc-" + via
	if o.socketInStateDir {
		name += "-probe"
	}
	r := newRig(t, name, o)
	r.via = via
	// A second closure, valid but unrooted at the start: a GC may take it
	// before nix-init holds it (then nix-init fetches it again) or not,
	// but never once nix-init has found it valid.
	fx2 := testnode.Chain(t, "concurrent-gc-valid", 2, 2, 4096)
	r.cache.Add(t, fx2.Root)
	r.node.Copy(t, fx2.Root)
	r.cache.Latency(50 * time.Millisecond)

	// GCs in a loop (bounded) until nix-init is done.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var gcs int
	var gcErr error
	var gcLog []string // the GCs that deleted something, shown on failure
	var stopOnce sync.Once
	stopGCs := func() {
		stopOnce.Do(func() { close(stop) })
		wg.Wait()
	}
	defer func() {
		stopGCs()
		if t.Failed() {
			t.Logf("GCs that deleted something:\n%s", strings.Join(gcLog, "\n"))
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			select {
			case <-stop:
				return
			default:
			}
			cmd := exec.Command("nix-store", "--store", r.node.Root, "--gc")
			cmd.Env = r.node.Environ()
			t0 := time.Now()
			out, err := cmd.CombinedOutput()
			if err != nil {
				gcErr = errors.New(err.Error() + ": " + string(out))
				return
			}
			if strings.Contains(string(out), "deleting '") {
				gcLog = append(gcLog, fmt.Sprintf("GC %d %s..%s:\n%s", gcs, t0.UTC().Format("15:04:05.000"), time.Now().UTC().Format("15:04:05.000"), out))
			}
			gcs++
		}
	}()
	res := runInit(t, r.cmd("--report", "report.json", "app="+r.fx.Root, "valid="+fx2.Root), 20*time.Second)
	stopGCs()
	if gcErr != nil {
		t.Fatalf("concurrent GC: %v", gcErr)
	}
	t.Logf("%d GCs ran during nix-init", gcs)
	if gcs < 2 {
		t.Errorf("only %d GCs ran while nix-init did: the test proves little", gcs)
	}
	wantCode(t, res, exitOK)
	r.node.GC(t)
	rep := r.readReport(t, "report.json")
	var rooted []string
	for _, root := range rep.Roots {
		if root.Link == "" {
			t.Errorf("report: root %s has no link", root.Name)
		}
		rooted = append(rooted, root.Path)
	}
	closure := storeClosure(t, r.node, rooted...)
	if len(closure) != len(r.fx.Closure)+len(fx2.Closure) {
		t.Errorf("closure of the roots has %d paths, want %d", len(closure), len(r.fx.Closure)+len(fx2.Closure))
	}
	if bad := r.node.Invalid(t, append(closure, append(r.fx.Closure, fx2.Closure...)...)...); len(bad) > 0 {
		t.Fatalf("rooted paths collected: %v", bad)
	}
	r.node.Verify(t)
}

// rootLinked waits until the run has registered the root of app.
func rootLinked(t *testing.T, r *rig) {
	t.Helper()
	waitFor(t, 15*time.Second, "root link", func() bool {
		_, err := os.Lstat(r.autoLink(r.link(t, "app")))
		return err == nil
	})
}

// gcWaits says whether a run waits for a collection in progress on the Nix
// under test: before 2.20 a collection may miss the daemon's temp roots.
func gcWaits(t *testing.T) bool { return !testnix.AtLeast(t, 2, 20) }

// TestGCInProgress: a run that roots its closure while a garbage
// collection is in progress (a real one, paused after it read the roots)
// keeps the closure alive. Before Nix 2.20 the collection may have missed
// the daemon's temp roots, so the run holds them until the collection is
// over, and says so; from 2.20 on they reach it, and the run ends at once.
func TestGCInProgress(t *testing.T) {
	t.Parallel()
	r := daemonRig(t, "gc-in-progress")
	endGC := r.node.PausedGC(t)
	p := start(t, r.cmd("app="+r.fx.Root))
	if gcWaits(t) {
		rootLinked(t, r)
		select {
		case <-p.done:
			t.Fatalf("nix-init exited while a garbage collection was in progress:\n%s", p.stderr.String())
		case <-time.After(1500 * time.Millisecond):
		}
		released := time.Now()
		endGC()
		res := p.wait(t, 10*time.Second)
		wantCode(t, res, exitOK)
		if d := time.Since(released); d > 3*time.Second {
			t.Errorf("nix-init exited %s after the collection ended", d)
		}
		if !regexp.MustCompile(`nix-init: waited [0-9.]+s for a garbage collection in progress`).MatchString(res.stderr) {
			t.Errorf("nix-init did not say why it waited")
		}
	} else {
		res := p.wait(t, 20*time.Second) // the collection is still paused
		wantCode(t, res, exitOK)
		if strings.Contains(res.stderr, "garbage collection") {
			t.Errorf("nix-init waited for a collection its temp roots reach:\n%s", res.stderr)
		}
		endGC()
	}
	if bad := r.node.Invalid(t, r.fx.Closure...); len(bad) > 0 {
		t.Fatalf("the collection deleted rooted paths: %v", bad)
	}
	r.checkRooted(t, "app", r.fx.Root)
	r.node.GC(t)
	if bad := r.node.Invalid(t, r.fx.Closure...); len(bad) > 0 {
		t.Fatalf("a later collection deleted rooted paths: %v", bad)
	}
}

// TestStatus: `nix-init status` in a sandbox after a run.
func TestStatus(t *testing.T) {
	t.Parallel()
	r := daemonRig(t, "status")
	fx2 := testnode.Chain(t, "status-missing", 1, 1, 8192)
	r.cache.Add(t, fx2.Root)
	wantCode(t, runInit(t, r.cmd("app="+r.fx.Root), 20*time.Second), exitOK)
	dangling := fakePath(r.fx.Root)
	if err := os.Symlink(dangling, filepath.Join(r.sb.Dir, ".gc", "gone")); err != nil {
		t.Fatal(err)
	}

	res := runInit(t, r.cmd("status"), 20*time.Second)
	wantCode(t, res, exitOK)
	out := res.stdout
	for _, re := range []string{
		`(?m)^store: +` + regexp.QuoteMeta(r.node.DaemonURI()) + ` \(daemon mode\)$`,
		`(?m)^daemon: +Nix ` + regexp.QuoteMeta(testnix.Version(t)) + `, protocol ` + negotiated(t),
		`(?m)^substituters: +` + regexp.QuoteMeta(r.cache.URL) + ` \(from nix\.conf\)$`,
		`(?m)^  app +-> ` + regexp.QuoteMeta(r.fx.Root) + ` +valid, registered$`,
		`(?m)^  gone +-> ` + regexp.QuoteMeta(dangling) + ` +DANGLING`,
		`(?m)^  ` + regexp.QuoteMeta(r.fx.Root) + ` +valid$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("status output does not match %s:\n%s", re, out)
		}
	}

	// Asked about a path the cache has but the node lacks.
	res = runInit(t, r.cmd("status", fx2.Root), 20*time.Second)
	wantCode(t, res, exitOK)
	for _, re := range []string{
		`(?m)^  ` + regexp.QuoteMeta(fx2.Root) + ` +missing, 2 paths to fetch: [0-9.]+ [KMG]?i?B download`,
		`(?m)^  app +-> ` + regexp.QuoteMeta(r.fx.Root) + ` +valid, registered$`,
	} {
		if !regexp.MustCompile(re).MatchString(res.stdout) {
			t.Errorf("status %s does not match %s:\n%s", fx2.Root, re, res.stdout)
		}
	}
}

// TestUsage: command-line mistakes exit 2 without touching a store.
func TestUsage(t *testing.T) {
	t.Parallel()
	bin := nixInitBinary(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no paths", nil, exitUsage, "no store paths given"},
		{"malformed path", []string{"/nix/store/not-a-store-path"}, exitUsage, "not-a-store-path"},
		{"relative path", []string{"app=nix/store/x"}, exitUsage, "app=nix/store/x"},
		{"unknown flag", []string{"--no-such-flag", "/nix/store/00000000000000000000000000000000-x"}, exitUsage, "no-such-flag"},
		{"bad store", []string{"--store", "ftp://x", "/nix/store/00000000000000000000000000000000-x"}, exitUsage, "ftp://x"},
		{"status malformed", []string{"status", "/tmp/x"}, exitUsage, "/tmp/x"},
		{"version args", []string{"version", "x"}, exitUsage, "no arguments"},
		{"help", []string{"--help"}, exitOK, "Exit codes:\n  0  every closure"},
		{"status help", []string{"status", "--help"}, exitOK, "3  gave up"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			cmd.Env = []string{"PATH=/usr/bin:/bin", "NIX_REMOTE=unix:///nonexistent/socket"}
			res := runInit(t, cmd, 10*time.Second)
			wantCode(t, res, tc.code)
			if !strings.Contains(res.stderr, tc.want) {
				t.Errorf("stderr does not mention %q:\n%s", tc.want, res.stderr)
			}
		})
	}
	t.Run("version", func(t *testing.T) {
		res := runInit(t, exec.Command(bin, "version"), 10*time.Second)
		wantCode(t, res, exitOK)
		if !regexp.MustCompile(`^nix-init \S+ \(go[0-9.]+\S*, protocol 1\.35, xz: (liblzma [0-9.]+|ulikunitz/xz \(pure Go\))\)\n$`).MatchString(res.stdout) {
			t.Errorf("version printed %q", res.stdout)
		}
	})
	t.Run("help lists exit codes", func(t *testing.T) {
		res := runInit(t, exec.Command(bin, "--help"), 10*time.Second)
		for _, c := range []string{"0  every", "1  permanent", "2  usage", "3  gave up"} {
			if !strings.Contains(res.stderr, c) {
				t.Errorf("--help does not list %q", c)
			}
		}
	})
}

// TestConcurrentRuns: several sandboxes of one job start at once on a
// node, through its daemon. All succeed, each path's NAR is downloaded
// once (one run realises the root, the others wait for it and find it
// valid), and every sandbox has its root.
func TestConcurrentRuns(t *testing.T) {
	t.Parallel()
	r := newRig(t, "concurrent", rigOptions{depth: 4, width: 3, bytes: 32 << 10, nodeSubstituters: true})
	const runs = 6
	// Every NAR response is held back a little, so that the runs overlap.
	r.cache.StallBodyMatching("/nar/", 50*time.Millisecond)
	var sandboxes []*testnode.Sandbox
	var procs []*proc
	for i := 0; i < runs; i++ {
		sb := testnode.NewSandbox(t, r.node)
		sandboxes = append(sandboxes, sb)
		procs = append(procs, start(t, sb.Command(sb.CopyExecutable(t, nixInitBinary(t)), "app="+r.fx.Root)))
	}
	fetched, byOthers := 0, 0
	for i, p := range procs {
		res := p.wait(t, 60*time.Second)
		wantCode(t, res, exitOK)
		for _, l := range lines(res.stderr) {
			if fetchedLine.MatchString(l) {
				fetched++
			}
			if strings.Contains(l, "realised by other nix-init runs") {
				byOthers++
			}
		}
		link := filepath.Join(sandboxes[i].Dir, ".gc", "app")
		if target, err := os.Readlink(link); err != nil || target != r.fx.Root {
			t.Errorf("run %d: .gc/app -> %q (%v)", i, target, err)
		}
	}
	if n := r.cache.Count("/nar/"); n != len(r.fx.Closure) {
		t.Errorf("%d NAR downloads for a closure of %d paths", n, len(r.fx.Closure))
	}
	if fetched != len(r.fx.Closure) {
		t.Errorf("%d paths fetched in all, want %d (each once)", fetched, len(r.fx.Closure))
	}
	if byOthers == 0 {
		t.Errorf("no run said another realised its root")
	}
	if bad := r.node.Invalid(t, r.fx.Closure...); len(bad) > 0 {
		t.Fatalf("not valid: %v", bad)
	}
	r.node.Verify(t)
}

// TestConcurrentRunTakesOver: a run waiting for another run's root takes
// it over when that run dies, and does not fetch anything while it lives.
func TestConcurrentRunTakesOver(t *testing.T) {
	t.Parallel()
	r := daemonRig(t, "takeover")
	r.cache.StallBodyMatching("/nar/", 20*time.Second)
	first := start(t, r.cmd("app="+r.fx.Root))
	waitFor(t, 15*time.Second, "the first run's NAR requests", func() bool { return r.cache.Count("/nar/") == len(r.fx.Closure) })

	sb := testnode.NewSandbox(t, r.node)
	second := start(t, sb.Command(sb.CopyExecutable(t, nixInitBinary(t)), "app="+r.fx.Root))
	time.Sleep(500 * time.Millisecond)
	if n := r.cache.Count("/nar/"); n != len(r.fx.Closure) {
		t.Fatalf("%d NAR requests while the first run held the root, want only its %d", n, len(r.fx.Closure))
	}
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.done
	r.cache.StallBody(0)
	res := second.wait(t, 30*time.Second)
	wantCode(t, res, exitOK)
	if link := filepath.Join(sb.Dir, ".gc", "app"); !r.node.Valid(t, r.fx.Root) {
		t.Fatalf("the root is not valid after the takeover")
	} else if target, err := os.Readlink(link); err != nil || target != r.fx.Root {
		t.Errorf(".gc/app -> %q (%v)", target, err)
	}
	if bad := r.node.Invalid(t, r.fx.Closure...); len(bad) > 0 {
		t.Fatalf("not valid: %v", bad)
	}
	r.node.Verify(t)
}

// TestSingleUserKilledMidUnpack: a single-user run killed after it
// unpacked part of the closure but before it registered it leaves invalid
// directories; the next run removes them, fetches again and registers,
// and the store verifies.
func TestSingleUserKilledMidUnpack(t *testing.T) {
	t.Parallel()
	r := newRig(t, "single-user-killed", rigOptions{noDaemon: true})
	if out, err := exec.Command("chown", "-R", "nobody:", r.node.Root).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	nixDaemon, err := exec.LookPath("nix-daemon")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--substituter", r.cache.URL, "--trusted-public-key", r.cache.PublicKey,
		"--store", r.node.Root, "--nix-daemon", nixDaemon, "app=" + r.fx.Root}
	// Everything but the root arrives at once; the root's NAR is held.
	r.cache.StallBodyMatching(filepath.Base(r.cache.NarFile(t, r.fx.Root)), 20*time.Second)
	rest := slices.DeleteFunc(slices.Clone(r.fx.Closure), func(p string) bool { return p == r.fx.Root })
	p := start(t, r.cmd(args...))
	waitFor(t, 15*time.Second, "the unpacked dependencies", func() bool {
		for _, q := range rest {
			if _, err := os.Lstat(r.node.Path(q)); err != nil {
				return false
			}
		}
		return true
	})
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	leftovers := 0
	for _, q := range rest {
		if !r.node.Valid(t, q) {
			leftovers++ // unpacked, not registered
		}
	}
	if leftovers == 0 {
		t.Fatal("the killed run left nothing to clean up: the test proves nothing")
	}
	r.cache.StallBody(0)
	res := runInit(t, r.cmd(args...), 30*time.Second)
	wantCode(t, res, exitOK)
	if bad := r.node.Invalid(t, r.fx.Closure...); len(bad) > 0 {
		t.Fatalf("not valid: %v", bad)
	}
	r.node.Verify(t)
}

// negotiated matches the protocol nix-init and the daemon under test agree
// on: the daemon's own when it is older than 1.35, else one from 1.35 (the
// oldest nix-init speaks to a newer daemon) up to the daemon's.
func negotiated(t *testing.T) string {
	t.Helper()
	d := testnix.DaemonProtocol(t)
	if d <= 0x123 {
		return regexp.QuoteMeta(fmt.Sprintf("%d.%d", d>>8, d&0xff)) + `\b`
	}
	var alts []string
	for v := 0x123; v <= d; v++ {
		alts = append(alts, regexp.QuoteMeta(fmt.Sprintf("%d.%d", v>>8, v&0xff)))
	}
	return `(` + strings.Join(alts, "|") + `)\b`
}
