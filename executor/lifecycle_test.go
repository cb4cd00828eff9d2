package executor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/thermos"
)

// lifecycleJob is the processes of a task whose one process is a
// lifecycle server.
func lifecycleJob(t *testing.T, mode string) string {
	t.Helper()
	return `[{"name": "server", "cmdline": "` + serverCmdline(t, mode) + `"}]`
}

// TestLifecycleKill: the endpoints in order, each waited for since the
// server answers, then the runner's kill (SIGTERM).
func TestLifecycleKill(t *testing.T) {
	t.Parallel()
	job := testJob(t, lifecycleJob(t, "stay"), fast(`, "initial_interval_secs": 1`)+
		`, "lifecycle": {"http": {"graceful_shutdown_wait_secs": 1, "shutdown_wait_secs": 1}}`)
	sandbox := filepath.Join(t.TempDir(), "sandbox")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := newRecorder()
	wait := start(t, ctx, job, Options{Sandbox: sandbox, Observer: rec})
	rec.waitHealth(t, HealthRunning)
	cancel()
	res, err := wait()
	var te *thermos.TaskError
	if !errors.As(err, &te) || te.State != thermos.TaskKilled || res.State != thermos.TaskKilled {
		t.Fatalf("%v, want KILLED", err)
	}
	calls := readCalls(t, sandbox)
	var got []string
	for _, c := range calls {
		got = append(got, c.what)
	}
	if strings.Join(got, ", ") != "POST /quitquitquit, POST /abortabortabort, TERM" {
		t.Fatalf("calls %q", got)
	}
	for i, min := range []time.Duration{time.Second, time.Second} {
		if d := calls[i+1].at.Sub(calls[i].at); d < min-100*time.Millisecond || d > min+2*time.Second {
			t.Errorf("%s %v after %s, want about %v", calls[i+1].what, d, calls[i].what, min)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.kills) != 3 || rec.kills[0].Endpoint != "/quitquitquit" || !rec.kills[0].Handled || rec.kills[0].Wait != time.Second ||
		rec.kills[1].Endpoint != "/abortabortabort" || rec.kills[2].Endpoint != "" || rec.kills[0].Reason != "Instructed to kill task." {
		t.Errorf("kill steps %+v", rec.kills)
	}
}

// TestLifecycleQuit: a task that ends on /quitquitquit is not waited for
// any longer, gets no /abortabortabort, and is KILLED whatever the runner
// says (it ended SUCCESS).
func TestLifecycleQuit(t *testing.T) {
	t.Parallel()
	job := testJob(t, lifecycleJob(t, "quit"), fast(`, "initial_interval_secs": 1`)+
		`, "lifecycle": {"http": {"graceful_shutdown_wait_secs": 20}}`)
	sandbox := filepath.Join(t.TempDir(), "sandbox")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := newRecorder()
	wait := start(t, ctx, job, Options{Sandbox: sandbox, Observer: rec})
	rec.waitHealth(t, HealthRunning)
	begin := time.Now()
	cancel()
	res, err := wait()
	if d := time.Since(begin); d > 10*time.Second {
		t.Errorf("the kill took %v: the executor waited past the task's end", d)
	}
	var te *TaskError
	if !errors.As(err, &te) || te.State != thermos.TaskKilled || te.Reason != "Instructed to kill task." || te.Runner != nil {
		t.Fatalf("%v, want the executor's KILLED", err)
	}
	if res.State != thermos.TaskKilled || res.Task.State != thermos.TaskSuccess {
		t.Errorf("result %s, runner %s", res.State, res.Task.State)
	}
	if calls := readCalls(t, sandbox); len(calls) != 1 || calls[0].what != "POST /quitquitquit" {
		t.Errorf("calls %+v", calls)
	}
}

// TestLifecycleUnanswered: a health port nobody listens on is signalled,
// unanswered, and the runner's kill follows at once.
func TestLifecycleUnanswered(t *testing.T) {
	t.Parallel()
	job := testJob(t, `[{"name": "app", "cmdline": "echo {{thermos.ports[health]}}; sleep 30"}]`, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := newRecorder()
	wait := start(t, ctx, job, Options{Observer: rec, NoHealthChecks: true})
	rec.waitHealth(t, HealthRunning)
	begin := time.Now()
	cancel()
	res, _ := wait()
	if d := time.Since(begin); d > 5*time.Second || res.State != thermos.TaskKilled {
		t.Errorf("%s after %v", res.State, d)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.kills) != 3 || rec.kills[0].Handled || rec.kills[1].Handled ||
		!strings.Contains(rec.kills[0].Message, "Connection refused") {
		t.Errorf("kill steps %+v", rec.kills)
	}
}

// TestEscalation: a runner that does not stop within StopTimeout is
// aborted.
func TestEscalation(t *testing.T) {
	t.Parallel()
	job := testJob(t, `[{"name": "stubborn", "cmdline": "trap '' TERM; touch started; while :; do sleep 0.1; done"}]`, "")
	job.Task.FinalizationWait = new(int64(30))
	sandbox := filepath.Join(t.TempDir(), "sandbox")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := newRecorder()
	wait := start(t, ctx, job, Options{Sandbox: sandbox, Observer: rec, StopTimeout: 500 * time.Millisecond})
	rec.waitHealth(t, HealthRunning)
	waitFile(t, filepath.Join(sandbox, "started"))
	begin := time.Now()
	cancel()
	res, _ := wait()
	if d := time.Since(begin); d > 5*time.Second || res.State != thermos.TaskKilled {
		t.Errorf("%s after %v, want KILLED soon after the stop timeout", res.State, d)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if n := len(rec.kills); n != 2 || !strings.Contains(rec.kills[1].Message, "did not stop within 500ms: aborting") {
		t.Errorf("kill steps %+v", rec.kills)
	}
}

// TestAbortDuringLifecycle: the second Ctrl-C cuts the lifecycle's wait.
func TestAbortDuringLifecycle(t *testing.T) {
	t.Parallel()
	job := testJob(t, lifecycleJob(t, "stay"), fast(`, "initial_interval_secs": 1`)+
		`, "lifecycle": {"http": {"graceful_shutdown_wait_secs": 20}}`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	abort := make(chan struct{})
	rec := newRecorder()
	wait := start(t, ctx, job, Options{Observer: rec, Abort: abort})
	rec.waitHealth(t, HealthRunning)
	cancel()
	for deadline := time.Now().Add(10 * time.Second); ; {
		rec.mu.Lock()
		n := len(rec.kills)
		rec.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no kill step")
		}
		time.Sleep(10 * time.Millisecond)
	}
	begin := time.Now()
	close(abort)
	res, _ := wait()
	if d := time.Since(begin); d > 5*time.Second || res.State != thermos.TaskKilled {
		t.Errorf("%s after %v", res.State, d)
	}
}

func waitFile(t *testing.T, file string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(file); err == nil {
			return
		}
	}
	t.Fatalf("%s never appeared", file)
}
