package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nix-aurora/nix-aurora/internal/human"
)

// Stopping: Thermos stops a task with SIGTERM and, after a grace, SIGKILL;
// an init that outlives the grace is killed with its children orphaned.
// So the first SIGTERM or SIGINT cancels the run (every wait of the engine
// ends on its context: downloads, claims, the GC wait, the store
// connections) and leaves it childGrace to end its children itself and
// clean up; then the children still running are killed, and after
// stopGrace in all nix-init exits whatever it is doing. A second signal
// exits at once. Temporary files have no name (see realise's spool), so
// exiting early never leaves one.
const (
	childGrace = 400 * time.Millisecond
	stopGrace  = 800 * time.Millisecond
)

// stopSignals are the signals that stop a run.
var stopSignals = []os.Signal{syscall.SIGTERM, syscall.SIGINT}

// stoppedError is the cause of a run's context when a signal stopped it.
type stoppedError struct{ sig syscall.Signal }

func (e stoppedError) Error() string { return "stopped by " + signalName(e.sig) }

func signalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	}
	return sig.String()
}

// handleSignals returns the context of the run, cancelled by the first
// stop signal, and a function that says which signal stopped the run (0:
// none). It logs to w what it does.
func handleSignals(w io.Writer) (context.Context, func() syscall.Signal) {
	ctx, cancel := context.WithCancelCause(context.Background())
	var got atomic.Int32
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, stopSignals...)
	go func() {
		sig := (<-sigs).(syscall.Signal)
		got.Store(int32(sig))
		log := &logger{w: w}
		log.printf("stopped by %s: cancelling (a second signal exits at once)", signalName(sig))
		cancel(stoppedError{sig})
		code := exitSignalBase + int(sig)
		wait := func(d time.Duration) {
			select {
			case again := <-sigs:
				log.printf("second signal (%s): exiting now", signalName(again.(syscall.Signal)))
				killChildren()
				os.Exit(code)
			case <-time.After(d):
			}
		}
		wait(childGrace)
		if n := killChildren(); n > 0 {
			log.printf("killed %s still running %s after %s", human.Count(int64(n), "child process", "child processes"), childGrace, signalName(sig))
		}
		wait(stopGrace - childGrace)
		log.printf("still cleaning up %s after %s: exiting", stopGrace, signalName(sig))
		os.Exit(code)
	}()
	return ctx, func() syscall.Signal { return syscall.Signal(got.Load()) }
}

// killChildren SIGKILLs this process's children (a child nix-daemon
// --stdio blocked on a lock or a download, a nix-store that registers
// paths) and returns how many it found. Each dies atomically as far as
// the store is concerned, as under the OOM killer.
func killChildren() int {
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := parentOf(pid); ok && ppid == self {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				n++
			}
		}
	}
	return n
}

// parentOf reads a live (not zombie) process's parent from /proc.
func parentOf(pid int) (int, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The name, in parentheses, may hold spaces and parentheses itself.
	rest := string(data)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	fields := strings.Fields(rest)
	if len(fields) < 2 || fields[0] == "Z" {
		return 0, false
	}
	ppid, err := strconv.Atoi(fields[1])
	return ppid, err == nil
}
