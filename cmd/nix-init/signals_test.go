package main

// How nix-init ends when it is killed or stopped: Thermos stops a task
// with SIGTERM and then SIGKILL, and the OOM killer or a preemption sends
// SIGKILL at any moment. Neither may leave a temporary file, and SIGTERM
// must end the run within a second, its children with it.

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/internal/testnix"
	"github.com/nix-aurora/nix-aurora/internal/testnode"
)

// stopBound is how long a stopped nix-init may take in these tests: the
// promise is a second, the rest is slack for a loaded machine.
const stopBound = 2 * time.Second

// bigNAR is larger than a quarter of Direct's memory budget, so that its
// NAR waits for its import in a temporary file.
const bigNAR = 4 << 20

// withTempDir gives a run its own TMPDIR, writable by the sandbox's user,
// and returns it.
func withTempDir(t *testing.T, r *rig, cmd *exec.Cmd) string {
	t.Helper()
	dir, err := os.MkdirTemp(r.sb.Dir, "tmp-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, int(r.sb.UID), int(r.sb.GID)); err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(cmd.Env, "TMPDIR="+dir)
	return dir
}

// openFilesIn reports whether process pid has a file under dir open.
func openFilesIn(pid int, dir string) func() bool {
	return func() bool {
		fds, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
		if err != nil {
			return false
		}
		for _, fd := range fds {
			target, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + fd.Name())
			if err == nil && strings.HasPrefix(target, dir+"/") {
				return true
			}
		}
		return false
	}
}

// checkEmpty fails the test if dir holds anything.
func checkEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		fi, _ := e.Info()
		size := int64(-1)
		if fi != nil {
			size = fi.Size()
		}
		t.Errorf("left in TMPDIR: %s (%d bytes)", e.Name(), size)
	}
}

// procStart identifies a process: its pid and its start time, so that a
// pid reused later is not taken for it.
type procStart struct {
	pid   int
	start string
	comm  string
}

// readStat returns a process's parent pid, start time and name.
func readStat(pid int) (ppid int, start, comm string, ok bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, "", "", false
	}
	s := string(data)
	i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if i < 0 || j < i {
		return 0, "", "", false
	}
	fields := strings.Fields(s[j+1:]) // state ppid pgrp ... starttime is field 22
	if len(fields) < 20 || fields[0] == "Z" {
		return 0, "", "", false
	}
	ppid, _ = strconv.Atoi(fields[1])
	return ppid, fields[19], s[i+1 : j], true
}

// descendants lists the live processes below pid.
func descendants(pid int) []procStart {
	entries, _ := os.ReadDir("/proc")
	children := map[int][]procStart{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, start, comm, ok := readStat(p); ok {
			children[ppid] = append(children[ppid], procStart{p, start, comm})
		}
	}
	var out []procStart
	queue := []int{pid}
	for len(queue) > 0 {
		for _, c := range children[queue[0]] {
			out = append(out, c)
			queue = append(queue, c.pid)
		}
		queue = queue[1:]
	}
	return out
}

// checkGone fails the test if any of procs still runs a second after
// nix-init exited: a process SIGKILLed just before the exit takes a moment
// to die on a loaded machine, one never killed stays.
func checkGone(t *testing.T, procs []procStart) {
	t.Helper()
	alive := func(p procStart) bool {
		_, start, _, ok := readStat(p.pid)
		return ok && start == p.start
	}
	deadline := time.Now().Add(time.Second)
	for _, p := range procs {
		for alive(p) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if alive(p) {
			t.Errorf("child %d (%s) outlived nix-init", p.pid, p.comm)
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
	}
}

// TestKilledLeavesNoSpoolFile: a NAR too large to wait in memory is
// spooled to a file in TMPDIR; nix-init SIGKILLed while it downloads
// leaves nothing there.
func TestKilledLeavesNoSpoolFile(t *testing.T) {
	t.Parallel()
	r := newRig(t, "killed-spool", rigOptions{depth: 1, width: 1, bytes: bigNAR, nodeSubstituters: true})
	r.via = "direct"
	// Headers at once, then the body after a long pause: the spool file
	// exists while the download waits.
	r.cache.StallBodyMatching("/nar/", 30*time.Second)
	cmd := r.cmd("app=" + r.fx.Root)
	tmp := withTempDir(t, r, cmd)
	p := start(t, cmd)
	waitFor(t, 15*time.Second, "spool file open in TMPDIR", openFilesIn(p.cmd.Process.Pid, tmp))
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	checkEmpty(t, tmp)
}

// stopCase is a run caught in the middle of something, to be stopped.
type stopCase struct {
	r   *rig
	p   *proc
	tmp string
}

// stop sends sig to the run, and checks that it ends within stopBound
// with the documented code, having said why, leaving no temporary file
// and no child process.
func (c *stopCase) stop(t *testing.T, sig syscall.Signal) result {
	t.Helper()
	kids := descendants(c.p.cmd.Process.Pid)
	t.Logf("children before the signal: %v", kids)
	sent := time.Now()
	if err := c.p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	res := c.p.wait(t, 10*time.Second)
	if d := time.Since(sent); d > stopBound {
		t.Errorf("nix-init took %s to stop after %v", d.Round(time.Millisecond), sig)
	}
	wantCode(t, res, 128+int(sig))
	if !strings.Contains(res.stderr, "nix-init: stopped by "+sigName(sig)) {
		t.Errorf("nix-init did not say it was stopped")
	}
	checkGone(t, kids)
	checkEmpty(t, c.tmp)
	return res
}

// TestStopDuringDownload: SIGTERM while NARs download (stalled) ends
// nix-init within a second, in either mode and with either way of
// substituting, children (the single-user nix-daemon) included.
func TestStopDuringDownload(t *testing.T) {
	t.Parallel()
	for _, via := range vias {
		t.Run("daemon mode/"+via, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, "stop-download-"+via, rigOptions{depth: 1, width: 1, bytes: bigNAR, nodeSubstituters: true})
			r.via = via
			r.cache.StallBodyMatching("/nar/", 30*time.Second)
			cmd := r.cmd("app=" + r.fx.Root)
			c := &stopCase{r: r, tmp: withTempDir(t, r, cmd)}
			c.p = start(t, cmd)
			if via == "direct" {
				waitFor(t, 15*time.Second, "spool file open in TMPDIR", openFilesIn(c.p.cmd.Process.Pid, c.tmp))
			} else {
				waitFor(t, 15*time.Second, "NAR request", narRequested(r.cache))
			}
			c.stop(t, syscall.SIGTERM)
		})
	}
	for _, via := range vias {
		t.Run("single-user/"+via, func(t *testing.T) {
			t.Parallel()
			c := singleUserStopCase(t, "stop-single-user-"+via, false)
			c.r.via = via
			c.p.cmd.Args = append([]string{c.p.cmd.Args[0], "--via", via}, c.p.cmd.Args[1:]...)
			c.r.cache.StallBodyMatching("/nar/", 30*time.Second)
			c.p = start(t, c.p.cmd)
			if via == "direct" {
				waitFor(t, 15*time.Second, "spool file open in TMPDIR", openFilesIn(c.p.cmd.Process.Pid, c.tmp))
			} else {
				// The child nix-daemon downloads, stalled.
				waitFor(t, 15*time.Second, "NAR request", narRequested(c.r.cache))
			}
			c.stop(t, syscall.SIGTERM)
		})
	}
}

// singleUserStopCase prepares (without starting it) a single-user run
// that imports through its child nix-daemon (--unpack=false) or unpacks.
func singleUserStopCase(t *testing.T, name string, unpack bool) *stopCase {
	t.Helper()
	r := newRig(t, name, rigOptions{depth: 1, width: 1, bytes: bigNAR, noDaemon: true})
	r.node.ValidPaths(t) // opening the store makes its directories
	if out, err := exec.Command("chown", "-R", "nobody:", r.node.Root).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	nixDaemon, err := exec.LookPath("nix-daemon")
	if err != nil {
		t.Fatal(err)
	}
	cmd := r.cmd("--substituter", r.cache.URL, "--trusted-public-key", r.cache.PublicKey,
		"--store", r.node.Root, "--nix-daemon", nixDaemon, "--unpack="+strconv.FormatBool(unpack), "app="+r.fx.Root)
	c := &stopCase{r: r, tmp: withTempDir(t, r, cmd)}
	c.p = &proc{cmd: cmd}
	return c
}

// TestStopDuringClaimWait: a run waiting for another run's claim on its
// root stops at once on SIGTERM.
func TestStopDuringClaimWait(t *testing.T) {
	t.Parallel()
	r := daemonRig(t, "stop-claim")
	r.cache.StallBodyMatching("/nar/", 30*time.Second)
	first := start(t, r.cmd("app="+r.fx.Root))
	waitFor(t, 15*time.Second, "the first run's NAR requests", narRequested(r.cache))
	sb := testnode.NewSandbox(t, r.node)
	cmd := sb.Command(sb.CopyExecutable(t, nixInitBinary(t)), "app="+r.fx.Root)
	c := &stopCase{r: r, tmp: withTempDir(t, r, cmd)}
	c.p = start(t, cmd)
	time.Sleep(500 * time.Millisecond) // the second run is waiting now
	select {
	case <-c.p.done:
		t.Fatalf("the second run ended while the first held the root:\n%s", c.p.stderr.String())
	default:
	}
	c.stop(t, syscall.SIGTERM)
	select {
	case <-first.done:
		t.Fatalf("the first run ended too")
	default:
	}
}

// TestStopDuringGCWait: a run waiting for a garbage collection in
// progress stops at once on SIGTERM, SIGINT too. Only a Nix before 2.20
// makes a run wait (see TestGCInProgress).
func TestStopDuringGCWait(t *testing.T) {
	t.Parallel()
	if !gcWaits(t) {
		t.Skipf("Nix %s: a run does not wait for a collection in progress", testnix.Version(t))
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sigName(sig), func(t *testing.T) {
			t.Parallel()
			r := daemonRig(t, "stop-gc-"+strings.ToLower(sigName(sig)))
			r.node.PausedGC(t) // and never goes on: the run is stopped while it waits
			cmd := r.cmd("app=" + r.fx.Root)
			c := &stopCase{r: r, tmp: withTempDir(t, r, cmd)}
			c.p = start(t, cmd)
			rootLinked(t, r)
			time.Sleep(300 * time.Millisecond) // waiting for the GC lock now
			c.stop(t, sig)
		})
	}
}

func sigName(sig syscall.Signal) string {
	if sig == syscall.SIGINT {
		return "SIGINT"
	}
	return "SIGTERM"
}

// TestStopDuringLockWait: in single-user mode the child nix-daemon waits
// for the lock of a path another process holds (a concurrent run); such
// a child notices neither its closed stdin nor SIGTERM, and still nix-init
// stops within a second, the child ended.
func TestStopDuringLockWait(t *testing.T) {
	t.Parallel()
	for _, via := range vias {
		t.Run(via, func(t *testing.T) {
			t.Parallel()
			c := singleUserStopCase(t, "stop-lock-"+via, false)
			c.p.cmd.Args = append([]string{c.p.cmd.Args[0], "--via", via}, c.p.cmd.Args[1:]...)
			unlock := lockClosure(t, c)
			defer unlock()
			c.p = start(t, c.p.cmd)
			if via == "direct" {
				// Downloaded, waiting for the lock to import.
				waitFor(t, 15*time.Second, "spool file open in TMPDIR", openFilesIn(c.p.cmd.Process.Pid, c.tmp))
			} else {
				waitFor(t, 15*time.Second, "the child nix-daemon", func() bool { return len(descendants(c.p.cmd.Process.Pid)) > 0 })
			}
			time.Sleep(time.Second) // the child waits for the lock now
			select {
			case <-c.p.done:
				t.Fatalf("nix-init ended while the paths were locked:\n%s", c.p.stderr.String())
			default:
			}
			c.stop(t, syscall.SIGTERM)
		})
	}
	// A second signal does not wait for the child to be killed.
	t.Run("twice", func(t *testing.T) {
		t.Parallel()
		c := singleUserStopCase(t, "stop-lock-twice", false)
		c.p.cmd.Args = append([]string{c.p.cmd.Args[0], "--via", "daemon"}, c.p.cmd.Args[1:]...)
		unlock := lockClosure(t, c)
		defer unlock()
		c.p = start(t, c.p.cmd)
		waitFor(t, 15*time.Second, "the child nix-daemon", func() bool { return len(descendants(c.p.cmd.Process.Pid)) > 0 })
		time.Sleep(time.Second)
		// Nix 2.8's child ignores the closed stdin and SIGTERM while it
		// waits for the lock; from 2.26 on it ends at once. Stopped, the
		// child behaves as 2.8's on every version, so the first signal
		// waits for it whatever Nix runs.
		for _, k := range descendants(c.p.cmd.Process.Pid) {
			if err := syscall.Kill(k.pid, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		res := c.stop(t, syscall.SIGTERM)
		if !strings.Contains(res.stderr, "second signal (SIGTERM): exiting now") || strings.Contains(res.stderr, "still running 400ms after") {
			t.Errorf("the second signal did not end nix-init at once")
		}
	})
}

// lockClosure takes Nix's lock (PATH.lock) of every path of the closure,
// as a concurrent run would, and returns the release.
func lockClosure(t *testing.T, c *stopCase) func() {
	t.Helper()
	var locks []*os.File
	release := func() {
		for _, l := range locks {
			l.Close()
		}
	}
	for _, p := range c.r.fx.Closure {
		lock, err := os.OpenFile(c.r.node.Path(p)+".lock", os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			release()
			t.Fatal(err)
		}
		locks = append(locks, lock)
		if err := lock.Chown(int(c.r.sb.UID), int(c.r.sb.GID)); err != nil {
			release()
			t.Fatal(err)
		}
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
			release()
			t.Fatal(err)
		}
	}
	return release
}
