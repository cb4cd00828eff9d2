package thermos

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
)

// This file is the coordinator: under Thermos each run of a process is a
// forked runner process that called setsid and starts the cmdline
// (apache/thermos/core/process.py, Process.start and execute), so bash's
// session, process group and $PPID are the coordinator's. Go cannot fork
// without exec, so the runner executes its own binary again under the
// argv[0] coordinatorArg0; the package's init recognises it and never
// returns.
//
// The runner starts the coordinator in a new session, in the sandbox, with
// the process's environment, stdin /dev/null and the run's log files as
// stdout and stderr, and two pipes:
//   - fd 3, coordinator to runner: "pid N" once bash runs, then "exit W"
//     (its wait status) once it ended, or "error MESSAGE" if it could not
//     start;
//   - fd 4, runner to coordinator: a 'T' asks for SIGTERM to bash (its top
//     pid, which only the coordinator, its parent, can signal without
//     racing its reaping). End of file means that the runner is gone.

// coordinatorArg0 is the argv[0] of a coordinator; its only argument is
// the cmdline.
const coordinatorArg0 = "thermos-coordinator"

// termRequest asks the coordinator to send SIGTERM to bash.
const termRequest = 'T'

// init turns a program that links this package into a coordinator when
// the runner started it as one, before its main (or TestMain) runs: test
// binaries that call Run need no hook of their own.
func init() {
	if len(os.Args) == 2 && os.Args[0] == coordinatorArg0 {
		// Not os.Exit: the race detector's runtime would linger a second
		// at every exit 0, and a coordinator has nothing to flush.
		syscall.Exit(coordinate(os.Args[1]))
	}
}

// coordinate runs `/bin/bash -c cmdline` as Process.execute does, and
// returns the coordinator's exit status (bash's own goes to the runner).
func coordinate(cmdline string) int {
	status, control := os.NewFile(3, "status"), os.NewFile(4, "control")
	if _, err := status.Stat(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: no status pipe on fd 3 (%v): only the thermos runner starts a coordinator\n", coordinatorArg0, err)
		return 2
	}
	if _, err := control.Stat(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: no control pipe on fd 4 (%v): only the thermos runner starts a coordinator\n", coordinatorArg0, err)
		return 2
	}
	fail := func(what string, err error) int {
		fmt.Fprintf(status, "error %s: %s\n", what, strings.ReplaceAll(err.Error(), "\n", " "))
		return 1
	}

	// Thermos' coordinator ignores SIGINT (RealPlatform._sanitize), and
	// bash inherits that.
	signal.Ignore(syscall.SIGINT)
	// Only 0, 1 and 2 reach bash (Popen's close_fds): whatever the runner
	// itself inherited without close-on-exec came here too.
	if err := closeOnExecFrom(3); err != nil {
		return fail("closing inherited file descriptors", err)
	}

	cmd := exec.Command("/bin/bash", "-c", cmdline)
	cmd.Env = os.Environ() // the runner gave the coordinator bash's environment
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return fail("starting /bin/bash", err)
	}
	pid := cmd.Process.Pid
	fmt.Fprintf(status, "pid %d\n", pid)

	var mu sync.Mutex
	exited := false // bash exited: its pid may be reaped, and reused
	go func() {
		buf := make([]byte, 16)
		for {
			n, err := control.Read(buf)
			mu.Lock()
			if !exited && bytes.IndexByte(buf[:n], termRequest) >= 0 {
				syscall.Kill(pid, syscall.SIGTERM)
			}
			if !exited && err != nil {
				// The runner is gone: unlike Thermos it cannot recover
				// its processes, so none may outlive it.
				killTree(os.Getpid(), pid)
			}
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()

	waitExited(pid)
	mu.Lock()
	exited = true
	mu.Unlock()
	cmd.Wait() // the status, whatever bash did, is in ProcessState
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok {
		return fail("waiting for /bin/bash", fmt.Errorf("no wait status for pid %d", pid))
	}
	fmt.Fprintf(status, "exit %d\n", uint32(ws))
	return 0
}

// killTree sends SIGKILL to a coordinator's process group and to its top
// pid's tree, which may have left the group: TaskRunnerHelper.kill_process,
// which kills the coordinator's group, the coordinator, the top pid and
// its descendants. The tree is read first, while top still holds it
// together, and the group (the coordinator's own, which may be the caller)
// last.
func killTree(coordinator, top int) {
	if top > 0 {
		for _, pid := range tree(top, coordinator) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	syscall.Kill(-coordinator, syscall.SIGKILL)
}
