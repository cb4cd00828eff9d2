package thermos

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// This file starts and ends one run of a process as Thermos' Process does
// (apache/thermos/core/process.py): a coordinator in a new session of its
// own (coordinator.go) runs `/bin/bash -c CMDLINE` in the sandbox, with a
// minimal environment, output to files.

// profileName is Thermos' RCFILE: when it exists in the sandbox as a process
// starts, bash reads it (BASH_ENV) before the cmdline.
const profileName = ".thermos_profile"

// procRun is one run of a process under way.
type procRun struct {
	proc  *proc
	seq   int
	pid   int // the coordinator's: its session and process group are the run's
	start time.Time

	mu      sync.Mutex
	control *os.File // requests to the coordinator
	exited  bool     // the coordinator has exited: its pid must no longer be signalled
	top     int      // bash's pid, once the coordinator told it
	killed  bool     // the runner sent SIGKILL
}

// exitEvent is the end of a run.
type exitEvent struct {
	run      *procRun
	end      time.Time
	code     int // exit status, or -N for signal N
	sig      bool
	startErr error // bash could not start
	err      error // the run could not be waited for, or its coordinator died
}

// logDir is where a run's stdout and stderr go (TaskPath's process_logdir).
func logDir(sandbox, process string, seq int) string {
	return filepath.Join(sandbox, ".logs", process, strconv.Itoa(seq))
}

// environ is the environment of a process started now (Process.execute).
func (r *runner) environ() []string {
	env := []string{"HOME=" + r.sandbox, "LOGNAME=" + r.user, "USER=" + r.user}
	if path, ok := os.LookupEnv("PATH"); ok {
		env = append(env, "PATH="+path)
	}
	profile := filepath.Join(r.sandbox, profileName)
	if _, err := os.Stat(profile); err == nil {
		env = append(env, "BASH_ENV="+profile)
	}
	return env
}

// startRun starts run seq of p under a coordinator. The run's end arrives
// on r.exits.
func (r *runner) startRun(p *proc, seq int) (*procRun, error) {
	dir := logDir(r.sandbox, p.name, seq)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	stdout, err := os.OpenFile(filepath.Join(dir, "stdout"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	defer stdout.Close()
	stderr, err := os.OpenFile(filepath.Join(dir, "stderr"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	defer stderr.Close()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("status pipe: %w", err)
	}
	defer statusW.Close()
	controlR, controlW, err := os.Pipe()
	if err != nil {
		statusR.Close()
		return nil, fmt.Errorf("control pipe: %w", err)
	}
	defer controlR.Close()

	cmd := &exec.Cmd{Path: selfExe, Args: []string{coordinatorArg0, p.cmdline}}
	cmd.Dir = r.sandbox
	cmd.Env = r.environ()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.ExtraFiles = []*os.File{statusW, controlR} // fds 3 and 4
	// The session exists before the coordinator runs a line, so the
	// runner never signals a group that is not yet the run's.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		statusR.Close()
		controlW.Close()
		return nil, fmt.Errorf("starting the coordinator: %w", err)
	}
	run := &procRun{proc: p, seq: seq, pid: cmd.Process.Pid, start: start, control: controlW}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.exits <- run.wait(cmd, statusR)
	}()
	return run, nil
}

// wait reads what the coordinator tells of bash until it exits, then kills
// whatever the run left in its process group, as Thermos does for every
// process that ends (TaskRunnerProcessHandler._cleanup →
// TaskRunnerHelper.kill_process), and reaps the coordinator.
func (run *procRun) wait(cmd *exec.Cmd, status *os.File) exitEvent {
	ev := exitEvent{run: run}
	var ws *syscall.WaitStatus
	sc := bufio.NewScanner(status)
	for sc.Scan() {
		word, arg, _ := strings.Cut(sc.Text(), " ")
		switch word {
		case "pid":
			if n, err := strconv.Atoi(arg); err == nil {
				run.mu.Lock()
				run.top = n
				run.mu.Unlock()
			}
		case "exit":
			if n, err := strconv.ParseUint(arg, 10, 32); err == nil {
				w := syscall.WaitStatus(n)
				ws, ev.end = &w, time.Now()
			}
		case "error":
			ev.startErr = errors.New(arg)
		}
	}
	status.Close()

	// The coordinator, not yet reaped, keeps its group's id from reuse.
	waited := waitExited(run.pid)
	if waited {
		run.finish()
	}
	err := cmd.Wait()
	if !waited {
		run.finish()
	}
	if ev.end.IsZero() {
		ev.end = time.Now()
	}
	run.mu.Lock()
	killed := run.killed
	run.mu.Unlock()
	switch {
	case ev.startErr != nil:
	case ws != nil && ws.Signaled():
		ev.code, ev.sig = -int(ws.Signal()), true
	case ws != nil:
		ev.code = ws.ExitStatus()
	case killed:
		// SIGKILL reached the coordinator before it could tell.
		ev.code, ev.sig = -int(syscall.SIGKILL), true
	default:
		ev.err = fmt.Errorf("the coordinator (pid %d) ended without telling how bash did: %v", run.pid, err)
	}
	return ev
}

// finish marks the coordinator exited and kills what is left in the run's
// group.
func (run *procRun) finish() {
	run.mu.Lock()
	defer run.mu.Unlock()
	run.exited = true
	syscall.Kill(-run.pid, syscall.SIGKILL)
	run.control.Close()
}

// terminate asks for SIGTERM to the run's top process only (bash, or what
// it exec'd): TaskRunnerHelper.terminate_process. The rest of its tree
// gets SIGKILL when the run ends.
func (run *procRun) terminate() {
	run.mu.Lock()
	defer run.mu.Unlock()
	if !run.exited {
		run.control.Write([]byte{termRequest})
	}
}

// kill sends SIGKILL to the run's coordinator, its group and its top
// pid's tree while the coordinator lives (TaskRunnerHelper.kill_process).
func (run *procRun) kill() {
	run.mu.Lock()
	defer run.mu.Unlock()
	if !run.exited {
		run.killed = true
		killTree(run.pid, run.top)
	}
}
