package main

// End-to-end tests of nix-init under a hostile neighbour squatting the
// claims runs of a node share work with (realise's claims).

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/internal/testnode"
	"github.com/nix-aurora/nix-aurora/realise"
	"github.com/nix-aurora/nix-aurora/store"
)

// squat runs the squatter as the neighbour on names, and returns its end,
// which gives the connections it accepted.
func squat(t *testing.T, mode string, names []string) (stop func() int) {
	t.Helper()
	cmd := testnode.SquatterCommand(t, mode, names...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the squatter: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 2)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(what string) string {
		select {
		case l := <-lines:
			return l
		case <-time.After(10 * time.Second):
			t.Fatalf("the squatter did not %s within 10s", what)
			return ""
		}
	}
	if l := next("start"); l != "ready" {
		t.Fatalf("the squatter did not start: %q", l)
	}
	return func() int {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		l := next("end")
		n, err := strconv.Atoi(strings.TrimSpace(l))
		if err != nil {
			t.Fatalf("the squatter said %q", l)
		}
		return n
	}
}

// TestSquattedClaims: a cold nix-init run with every claim name it uses
// squatted by another local user, in every way, through the daemon and in
// single-user mode, succeeds promptly (far below the two minutes a claim
// could once cost per path), connecting to each name at most once.
func TestSquattedClaims(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"daemon", "single-user"} {
		for _, mode := range testnode.SquatModes {
			t.Run(kind+"/"+mode, func(t *testing.T) {
				t.Parallel()
				testSquattedClaims(t, kind, mode)
			})
		}
	}
}

func testSquattedClaims(t *testing.T, kind, mode string) {
	var r *rig
	var loc store.Location
	var args []string
	switch kind {
	case "daemon":
		r = daemonRig(t, "squatted-"+mode)
		loc = store.Location{Mode: store.Daemon, Socket: r.node.Socket}
	default:
		r = newRig(t, "squatted-single-"+mode, rigOptions{noDaemon: true})
		if out, err := exec.Command("chown", "-R", "nobody:", r.node.Root).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v %s", err, out)
		}
		nixDaemon, err := exec.LookPath("nix-daemon")
		if err != nil {
			t.Fatal(err)
		}
		var perr error
		if loc, perr = store.ParseURI(r.node.Root); perr != nil {
			t.Fatal(perr)
		}
		args = []string{"--substituter", r.cache.URL, "--trusted-public-key", r.cache.PublicKey,
			"--store", r.node.Root, "--nix-daemon", nixDaemon}
	}
	names := realise.ClaimNames(loc, r.fx.Closure)
	stop := squat(t, mode, names)
	res := runInit(t, r.cmd(append(args, "--timeout", "30s", "app="+r.fx.Root)...), 60*time.Second)
	wantCode(t, res, exitOK)
	if res.elapsed > 10*time.Second {
		t.Errorf("the run took %s with its claims squatted", res.elapsed)
	}
	r.checkRooted(t, "app", r.fx.Root)
	n := stop()
	t.Logf("the squatter accepted %d connections to its %d names", n, len(names))
	if n > len(names) {
		t.Errorf("the squatter accepted %d connections to its %d names", n, len(names))
	}
	if n == 0 && (mode == "accept-close" || mode == "wrong-data") {
		t.Errorf("the squatter accepted no connection: the run did not use the names squatted")
	}
}
