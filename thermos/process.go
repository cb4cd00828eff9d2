package thermos

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// This file starts and ends one run of a process as Thermos' Process does
// (apache/thermos/core/process.py): a new session, `/bin/bash -c CMDLINE`
// in the sandbox, a minimal environment, output to files.

// profileName is Thermos' RCFILE: when it exists in the sandbox as a process
// starts, bash reads it (BASH_ENV) before the cmdline.
const profileName = ".thermos_profile"

// procRun is one run of a process under way.
type procRun struct {
	proc  *proc
	seq   int
	pid   int
	start time.Time

	mu     sync.Mutex
	exited bool // the leader has exited: its pid must no longer be signalled
}

// exitEvent is the end of a run.
type exitEvent struct {
	run  *procRun
	end  time.Time
	code int // exit status, or -N for signal N
	sig  bool
	err  error // the run could not be waited for
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

// startRun starts run seq of p. The run's end arrives on r.exits.
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

	cmd := exec.Command("/bin/bash", "-c", p.cmdline)
	cmd.Dir = r.sandbox
	cmd.Env = r.environ()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	run := &procRun{proc: p, seq: seq, pid: cmd.Process.Pid, start: start}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.exits <- run.wait(cmd)
	}()
	return run, nil
}

// wait waits for the run's bash to exit, then kills whatever it left in its
// process group, as Thermos does for every process that ends
// (TaskRunnerProcessHandler._cleanup → TaskRunnerHelper.kill_process).
func (run *procRun) wait(cmd *exec.Cmd) exitEvent {
	waited := waitExited(run.pid)
	end := time.Now()
	if waited {
		run.mu.Lock()
		run.exited = true
		syscall.Kill(-run.pid, syscall.SIGKILL)
		run.mu.Unlock()
	}
	err := cmd.Wait()
	if !waited {
		end = time.Now()
		run.mu.Lock()
		run.exited = true
		syscall.Kill(-run.pid, syscall.SIGKILL)
		run.mu.Unlock()
	}
	ev := exitEvent{run: run, end: end}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		ws, ok := exitErr.Sys().(syscall.WaitStatus)
		switch {
		case ok && ws.Signaled():
			ev.code, ev.sig = -int(ws.Signal()), true
		default:
			ev.code = exitErr.ExitCode()
		}
	default:
		ev.err = fmt.Errorf("waiting for bash (pid %d): %w", run.pid, err)
	}
	return ev
}

// terminate sends SIGTERM to the run's top process only (bash, or what it
// exec'd), while it lives: TaskRunnerHelper.terminate_process. The rest of
// its tree gets SIGKILL when the run ends.
func (run *procRun) terminate() {
	run.mu.Lock()
	defer run.mu.Unlock()
	if !run.exited {
		syscall.Kill(run.pid, syscall.SIGTERM)
	}
}

// kill sends SIGKILL to the run's process group while its leader lives
// (TaskRunnerHelper.kill_process).
func (run *procRun) kill() {
	run.mu.Lock()
	defer run.mu.Unlock()
	if !run.exited {
		syscall.Kill(-run.pid, syscall.SIGKILL)
	}
}
