package executor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/thermos"
)

const sleeper = `[{"name": "app", "cmdline": "sleep 30"}]`

func TestHealthPassing(t *testing.T) {
	var gets, posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			posts.Add(1)
			return
		}
		gets.Add(1)
		fmt.Fprintln(w, "  OK") // stripped and lower-cased before the comparison
	}))
	defer srv.Close()
	job := testJob(t, sleeper, fast(`, "min_consecutive_successes": 2`)+", "+staticHealth(srv))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := newRecorder()
	wait := start(t, ctx, job, Options{Observer: rec})

	h := rec.waitHealth(t, HealthRunning)
	if h.Checker != CheckerHTTP || h.Checks != 2 {
		t.Errorf("RUNNING after %d checks (%s), want 2 (min_consecutive_successes)", h.Checks, h.Checker)
	}
	first := rec.healths()[0]
	if first.State != HealthStarting || first.Checks != 0 {
		t.Errorf("first health %+v, want STARTING before any check", first)
	}
	cancel()
	res, err := wait()
	var te *thermos.TaskError
	if !errors.As(err, &te) || te.State != thermos.TaskKilled {
		t.Fatalf("error %v, want the runner's KILLED", err)
	}
	if res.State != thermos.TaskKilled || res.Reason != "Instructed to kill task." {
		t.Errorf("result %s %q", res.State, res.Reason)
	}
	if gets.Load() < 2 || posts.Load() != 2 {
		t.Errorf("%d GETs, %d POSTs (want the two lifecycle endpoints)", gets.Load(), posts.Load())
	}
}

func TestHealthFailing(t *testing.T) {
	never := make(chan struct{})
	t.Cleanup(func() { close(never) }) // after the parallel subtests
	cases := []struct {
		name    string
		handler http.HandlerFunc
		config  string
		reason  string
	}{
		{"body", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "nope") }, "",
			`Failed health check! Response differs from expected response (expected "ok", got "nope")`},
		{"long body", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "I AM NOT WELL AT ALL") }, `, "health_checker": {"http": {"expected_response": "everything is fine"}}`,
			`Failed health check! Response differs from expected response (expected "everyth...", got "i am no...")`},
		{"code", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) },
			`, "health_checker": {"http": {"expected_response": "", "expected_response_code": 200}}`,
			`Failed health check! Response code differs from expected response (expected 200, got 503)`},
		{"timeout", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-never:
			}
		}, "", "Error within timeout"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var gets atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodGet {
					gets.Add(1)
					c.handler(w, r)
				}
			}))
			defer srv.Close()
			job := testJob(t, sleeper, fast(`, "timeout_secs": 0.2, "max_consecutive_failures": 2`+c.config)+", "+staticHealth(srv))
			rec := newRecorder()
			begin := time.Now()
			res, err := start(t, context.Background(), job, Options{Observer: rec})()
			var te *TaskError
			if !errors.As(err, &te) || te.State != thermos.TaskFailed || !strings.Contains(te.Reason, c.reason) {
				t.Fatalf("error %v, want a FAILED task: %s", err, c.reason)
			}
			if !strings.HasPrefix(err.Error(), "task FAILED: Failed health check! ") {
				t.Errorf("error %q", err)
			}
			if res.State != thermos.TaskFailed || res.Task.State != thermos.TaskKilled || res.Reason != te.Reason {
				t.Errorf("result %s (runner %s) %q", res.State, res.Task.State, res.Reason)
			}
			// One forgiven failure, then three counted: more than
			// max_consecutive_failures (2).
			if got := gets.Load(); got != 4 {
				t.Errorf("%d checks, want 4", got)
			}
			if h := res.Health; h.State != HealthFailed || h.Failures != 3 || h.Reason != strings.TrimPrefix(te.Reason, "Failed health check! ") {
				t.Errorf("health %+v", h)
			}
			if hs := rec.healths(); !hs[1].Forgiven || hs[2].Forgiven || hs[2].Failures != 1 {
				t.Errorf("the first failure should be forgiven, the second counted: %+v", hs)
			}
			if d := time.Since(begin); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if last := rec.tasks[len(rec.tasks)-1]; last != thermos.TaskFailed {
				t.Errorf("the observer saw the task end %s, want FAILED", last)
			}
		})
	}
}

func TestShellChecker(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, process, command string
		state                  HealthState
		reason                 string
	}{
		// The check runs where the executor runs on a node: in the
		// directory that holds Thermos' sandbox.
		{"passing", "touch ready; sleep 30", "test -f sandbox/ready && test -n '{{thermos.task_id}}' && test {{mesos.instance}} = 0", HealthRunning, ""},
		{"failing", "sleep 30", "echo broken; exit 3", HealthFailed,
			"Failed health check! Command 'echo broken; exit 3' returned non-zero exit status 3 with output 'broken\n'"},
		{"timeout", "sleep 30", "sleep 20", HealthFailed, "Failed health check! Health check timed out."},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			job := testJob(t, `[{"name": "app", "cmdline": "`+c.process+`"}]`,
				fast(`, "timeout_secs": 0.3, "health_checker": {"shell": {"shell_command": "`+c.command+`"}}`))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			rec := newRecorder()
			wait := start(t, ctx, job, Options{Observer: rec})
			h := rec.waitHealth(t, c.state)
			if h.Checker != CheckerShell {
				t.Errorf("checker %s", h.Checker)
			}
			if c.reason == "" {
				cancel()
			}
			res, err := wait() // a failing check ends the task by itself
			if c.reason == "" {
				if res.State != thermos.TaskKilled {
					t.Errorf("%s, %v", res.State, err)
				}
				return
			}
			if res.State != thermos.TaskFailed || res.Reason != c.reason {
				t.Errorf("%s %q, want FAILED %q (%v)", res.State, res.Reason, c.reason, err)
			}
		})
	}
}

func TestNoopChecker(t *testing.T) {
	t.Parallel()
	// No health port: a failing HTTP check would never be made.
	job := testJob(t, `[{"name": "app", "cmdline": "sleep 0.3"}]`, fast(`, "max_consecutive_failures": 0`))
	rec := newRecorder()
	res, err := start(t, context.Background(), job, Options{Observer: rec})()
	if err != nil || res.State != thermos.TaskSuccess || res.Reason != "Task finished." {
		t.Fatalf("%v %v", res, err)
	}
	hs := rec.healths()
	if len(hs) != 1 || hs[0].Checker != CheckerNone || hs[0].State != HealthRunning ||
		hs[0].Reason != "No health-check defined, task is assumed healthy." {
		t.Errorf("health %+v", hs)
	}
}

func TestNoHealthChecks(t *testing.T) {
	t.Parallel()
	job := testJob(t, `[{"name": "app", "cmdline": "sleep 0.5"}]`,
		fast(`, "interval_secs": 0, "health_checker": {"shell": {"shell_command": "false"}}`))
	if _, err := Run(context.Background(), job, Options{Sandbox: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "interval_secs") {
		t.Errorf("interval_secs 0: %v", err)
	}
	rec := newRecorder()
	res, err := start(t, context.Background(), job, Options{Observer: rec, NoHealthChecks: true})()
	if err != nil || res.State != thermos.TaskSuccess {
		t.Fatalf("%v %v", res, err)
	}
	if hs := rec.healths(); len(hs) != 1 || hs[0].Checker != CheckerOff || hs[0].State != HealthRunning {
		t.Errorf("health %+v", hs)
	}
}

func TestSnooze(t *testing.T) {
	t.Parallel()
	job := testJob(t, `[{"name": "app", "cmdline": "touch .healthchecksnooze; sleep 30"}]`,
		fast(`, "initial_interval_secs": 0.6, "health_checker": {"shell": {"shell_command": "false"}}`))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := newRecorder()
	wait := start(t, ctx, job, Options{Observer: rec})
	if h := rec.waitHealth(t, HealthRunning); !h.Snoozed {
		t.Errorf("RUNNING without the snooze file: %+v", h)
	}
	cancel()
	wait()
}

// TestTracker checks the counting rules of ThreadedHealthChecker.
func TestTracker(t *testing.T) {
	t.Parallel()
	cases := []struct {
		initial, interval       float64
		maxFailures, minSuccess int64
		checks                  string // p: passes, f: fails
		want                    string // the state after each check: S, R, F
	}{
		// ceil(15/10) = 2 forgiven failures; the third fails the task.
		{15, 10, 0, 1, "fff", "SSF"},
		{15, 10, 0, 1, "ffp", "SSR"},
		// Once RUNNING, max_consecutive_failures + 1 failures in a row fail.
		{1, 1, 2, 1, "pfpfffp", "RRRRRF"},
		// A failure resets the successes: min 3 needs three in a row, in
		// forgiven (1) + max_failures (1) + min (3) = 5 attempts; after
		// attempt 3 fails, 2 attempts are left for 3 successes: fail fast.
		{1, 1, 1, 3, "ppf", "SSF"},
		// Alternating never gives min_consecutive_successes (2) in a row,
		// nor too many failures in a row.
		{1, 1, 5, 2, "pfpfpfp", "SSSSSSS"},
		{0, 1, 0, 1, "f", "F"},
	}
	for i, c := range cases {
		tr := newTracker(&config{initial: c.initial, interval: c.interval, maxFailures: c.maxFailures, minSuccesses: c.minSuccess})
		var got strings.Builder
		var h Health
		for _, r := range c.checks {
			pass := r == 'p'
			tr.round(context.Background(), func(context.Context) (bool, string) { return pass, "bad" }, &h)
			got.WriteString(tr.state().String()[:1])
			if tr.failed {
				break
			}
		}
		if got.String() != c.want {
			t.Errorf("case %d: %s, want %s", i, got.String(), c.want)
		}
	}
	// The deadline: once the attempts passed forgiven + max_failures + min
	// (8) without reaching RUNNING, the next round fails without a check.
	tr := newTracker(&config{initial: 1, interval: 1, maxFailures: 5, minSuccesses: 2})
	var h Health
	for i := 0; i < 9; i++ {
		pass := i%2 == 0
		tr.round(context.Background(), func(context.Context) (bool, string) { return pass, "bad" }, &h)
	}
	if tr.state() != HealthStarting {
		t.Fatalf("state %s after 9 alternating checks", tr.state())
	}
	tr.round(context.Background(), func(context.Context) (bool, string) { return true, "" }, &h)
	if tr.state() != HealthFailed || tr.reason != "Not enough successful health checks in time." {
		t.Errorf("after the attempts ran out: %s %q", tr.state(), tr.reason)
	}
}

func TestPorts(t *testing.T) {
	t.Parallel()
	job := testJob(t, sleeper, `"announce": {"primary_port": "web", "portmap": {"health": "admin", "admin": "{{primary_port}}", "loop": "loop", "static": " 8080 "}}`)
	c, err := readConfig(job, 0, "host")
	if err != nil {
		t.Fatal(err)
	}
	got := c.ports("id", map[string]int{"web": 4000, "static": 9000})
	// "loop" leads nowhere; the assigned ports win over the portmap.
	want := map[string]int{"health": 4000, "admin": 4000, "web": 4000, "static": 9000}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ports %v, want %v", got, want)
	}
}
