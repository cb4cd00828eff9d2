package thermos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/aurora"
)

// job makes a job around a task written as JSON, as Aurora's client reads it.
func job(t testing.TB, task string) aurora.Job {
	t.Helper()
	doc, err := aurora.ParseDocument([]byte(`{"name": "hello", "role": "www-data", "cluster": "devcluster",
		"environment": "devel", "instances": 2, "task": ` + task + `}`))
	if err != nil {
		t.Fatalf("task %s: %v", task, err)
	}
	return doc.Jobs[0]
}

// recorder is an Observer that keeps everything it is told.
type recorder struct {
	mu           sync.Mutex
	tasks        []TaskState
	taskStatuses []TaskStatus
	updates      []ProcessStatus
}

func (r *recorder) TaskChanged(s TaskStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tasks = append(r.tasks, s.State)
	r.taskStatuses = append(r.taskStatuses, s)
}

func (r *recorder) ProcessChanged(s ProcessStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.updates = append(r.updates, s)
}

// states lists "NAME/RUN STATE" in the order they were reported.
func (r *recorder) states(name string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, u := range r.updates {
		if u.Process == name {
			out = append(out, fmt.Sprintf("%d %s", u.Run, u.State))
		}
	}
	return out
}

// runTask runs the job in a fresh sandbox, bounded in time.
func runTask(t *testing.T, ctx context.Context, j aurora.Job, opts Options) (*Result, string, error) {
	t.Helper()
	if opts.Sandbox == "" {
		opts.Sandbox = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := Run(ctx, j, opts)
	if ctx.Err() == context.DeadlineExceeded {
		t.Fatalf("the task did not end within 30s")
	}
	return res, opts.Sandbox, err
}

// mustSucceed fails the test unless the task succeeded.
func mustSucceed(t *testing.T, res *Result, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.State != TaskSuccess {
		t.Fatalf("task %s, want SUCCESS", res.State)
	}
}

// mustFail fails the test unless the task ended in state want with a
// *TaskError.
func mustEnd(t *testing.T, res *Result, err error, want TaskState) *TaskError {
	t.Helper()
	var te *TaskError
	if !errors.As(err, &te) || te.State != want {
		t.Fatalf("Run returned %v, want a %s TaskError", err, want)
	}
	if res == nil || res.State != want {
		t.Fatalf("result %+v, want state %s", res, want)
	}
	return te
}

// read returns a file of the sandbox, trimmed.
func read(t testing.TB, dir, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

func exists(dir, name string) bool {
	_, err := os.Stat(filepath.Join(dir, name))
	return err == nil
}

// stamps reads a file of $EPOCHREALTIME lines.
func stamps(t testing.TB, dir, name string) []time.Time {
	t.Helper()
	var out []time.Time
	for _, line := range strings.Fields(read(t, dir, name)) {
		f, err := strconv.ParseFloat(line, 64)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, time.Unix(0, int64(f*1e9)))
	}
	return out
}

// runStates lists the states of a process's runs that ended.
func runStates(t testing.TB, res *Result, name string) []ProcessState {
	t.Helper()
	p, ok := res.Process(name)
	if !ok {
		t.Fatalf("no process %s in the result", name)
	}
	var out []ProcessState
	for _, r := range p.Runs {
		out = append(out, r.State)
	}
	return out
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// waitFor polls until the file exists (bounded).
func waitFor(t testing.TB, dir, name string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if exists(dir, name) {
			return
		}
	}
	t.Errorf("%s did not appear within 10s", name)
}

// cancelWhen returns a context cancelled (a kill) once the file appears in
// dir, or after 10s.
func cancelWhen(t *testing.T, dir, name string) context.Context {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		defer cancel()
		waitFor(t, dir, name)
	}()
	return ctx
}

// dies reports whether pid is gone within 2s: a SIGKILL sent is not yet
// a process dead.
func dies(pid int) bool {
	for deadline := time.Now().Add(2 * time.Second); alive(pid) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	return !alive(pid)
}
