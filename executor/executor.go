package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nix-aurora/nix-aurora/aurora"
	"github.com/nix-aurora/nix-aurora/thermos"
)

// Options says where and how the task instance runs.
type Options struct {
	// Sandbox, Instance, Hostname and TaskID are thermos.Options'.
	Sandbox  string
	Instance int
	Hostname string
	TaskID   string
	// Observer, when set, receives the task's progress, its health and the
	// steps of a kill.
	Observer Observer
	// NoHealthChecks runs no health checker: the task is RUNNING as soon as
	// it is active. The kill's HTTP lifecycle still applies.
	NoHealthChecks bool
	// Abort, when closed, ends the task at once (thermos.Options.Abort),
	// cutting short the HTTP lifecycle of a kill. Cancelling Run's context
	// is the kill.
	Abort <-chan struct{}
	// StopTimeout is how long the runner's kill may take before the
	// executor aborts the task; zero means a minute, as
	// ThermosTaskRunner.stop waits (MAX_WAIT).
	StopTimeout time.Duration
}

// DefaultStopTimeout is ThermosTaskRunner.MAX_WAIT.
const DefaultStopTimeout = time.Minute

// Observer receives what the runner reports (thermos.Observer), the task's
// health and the steps of a kill. Calls come one at a time, in the order
// things happen, from more than one goroutine; they should return quickly.
type Observer interface {
	thermos.Observer
	// HealthChanged reports the checker when the task becomes active, then
	// each check.
	HealthChanged(Health)
	// Killing reports each step of a kill.
	Killing(KillStep)
}

// KillStep is one step of the executor's kill.
type KillStep struct {
	// Reason is why the task is killed (Aurora's words): "Instructed to
	// kill task.", or "Failed health check! ...".
	Reason string
	// Endpoint is the lifecycle endpoint POSTed to, empty for the runner's
	// kill and the abort.
	Endpoint string
	// Handled tells whether the endpoint answered; the executor then waits
	// up to Wait for the task to end.
	Handled bool
	Wait    time.Duration
	// Message is the failed request's error, or what the step does.
	Message string
}

// Result is how the task ended, as the executor reports it.
type Result struct {
	// Task is what the runner reports.
	Task *thermos.Result
	// State is the executor's verdict: the runner's, except for a task the
	// executor killed (KILLED) or that failed its health check (FAILED),
	// whatever the runner made of the kill.
	State thermos.TaskState
	// Reason is the message of Aurora's final status update.
	Reason string
	// Health is the last health reported.
	Health Health
}

// TaskError is the error of a task whose end the executor decided: killed,
// or failed for its health check, while the runner reported otherwise
// (say, SUCCESS for a task that quit when asked to).
type TaskError struct {
	State  thermos.TaskState
	Reason string
	// Runner is the runner's error, nil if the task succeeded.
	Runner error
}

// Error is the executor's reason alone: the runner's reasons for a task it
// was told to kill ("interrupted...") would only contradict it.
func (e *TaskError) Error() string { return "task " + e.State.String() + ": " + e.Reason }

// Aurora's status messages (KillManager, HealthChecker, NoopHealthChecker,
// ThermosTaskRunner.EXIT_STATE_MAP).
const (
	reasonKilled  = "Instructed to kill task."
	reasonHealth  = "Failed health check! "
	reasonNoCheck = "No health-check defined, task is assumed healthy."
)

var exitReasons = map[thermos.TaskState]string{
	thermos.TaskSuccess: "Task finished.",
	thermos.TaskFailed:  "Task failed.",
	thermos.TaskKilled:  "Task killed.",
}

// Run runs instance opts.Instance of the job's task as Aurora's executor
// does and returns once it ended and nothing it started runs. Its errors
// are thermos.Run's: a *thermos.TaskError for a task that failed or was
// killed (with the Result), another error when nothing ran. When the
// executor decided the task's end against the runner's report (a failed
// health check, a kill the task survived as SUCCESS or FAILED) the error
// is a *TaskError.
func Run(ctx context.Context, job aurora.Job, opts Options) (*Result, error) {
	hostname := opts.Hostname
	if hostname == "" {
		var err error
		if hostname, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("hostname for {{mesos.hostname}}: %w", err)
		}
	}
	cfg, err := readConfig(job, opts.Instance, hostname)
	if err != nil {
		return nil, err
	}
	if !opts.NoHealthChecks {
		if err := cfg.checkable(); err != nil {
			return nil, err
		}
	}
	e := &executor{cfg: cfg, opts: opts, obs: opts.Observer, active: make(chan *activeTask, 1),
		abort: make(chan struct{}), done: make(chan struct{})}
	if e.opts.StopTimeout <= 0 {
		e.opts.StopTimeout = DefaultStopTimeout
	}
	return e.run(ctx, job, hostname)
}

type executor struct {
	cfg  *config
	opts Options

	mu      sync.Mutex // serializes the observer's calls; guards verdict, health and task
	obs     Observer
	verdict *verdict
	health  Health
	task    *activeTask // set when the task becomes active

	active    chan *activeTask // the task became active: start its checker
	abort     chan struct{}    // thermos.Options.Abort
	abortOnce sync.Once
	done      chan struct{} // thermos.Run returned
}

// activeTask is what the executor knows of the task once it is active.
type activeTask struct {
	status thermos.TaskStatus
	ports  map[string]int // the resolved portmap
	check  check          // the health check, nil for none
	health Health         // the health before any check
}

// verdict is the end the executor decided for the task.
type verdict struct {
	state  thermos.TaskState
	reason string
}

func (e *executor) run(ctx context.Context, job aurora.Job, hostname string) (*Result, error) {
	// The runner's context is the executor's: the caller's cancellation
	// starts the executor's kill, which cancels it after the lifecycle.
	runCtx, kill := context.WithCancel(context.WithoutCancel(ctx))
	defer kill()
	var res *thermos.Result
	var runErr error
	go func() {
		defer close(e.done)
		res, runErr = thermos.Run(runCtx, job, thermos.Options{
			Sandbox: e.opts.Sandbox, Instance: e.opts.Instance, Hostname: hostname, TaskID: e.opts.TaskID,
			Observer: (*runnerObserver)(e), Abort: e.abort,
		})
	}()

	healthCtx, stopHealth := context.WithCancel(context.Background())
	defer stopHealth()
	var healthDone chan struct{}
	failed := make(chan string, 1)
	stopChecks := func() {
		stopHealth()
		if healthDone != nil {
			<-healthDone
		}
	}

	var why *verdict
wait:
	for {
		select {
		case <-e.done:
			stopChecks()
			break wait
		case task := <-e.active:
			healthDone = make(chan struct{})
			go func() {
				defer close(healthDone)
				e.checkHealth(healthCtx, task, failed)
			}()
		case reason := <-failed:
			why = &verdict{thermos.TaskFailed, reasonHealth + reason}
			break wait
		case <-ctx.Done():
			why = &verdict{thermos.TaskKilled, reasonKilled}
			break wait
		case <-e.opts.Abort:
			e.abortNow()
			// The runner ends the task at once; its report stands.
			<-e.done
			stopChecks()
			break wait
		}
	}
	if why != nil {
		e.mu.Lock()
		e.verdict = why
		task := e.task
		e.mu.Unlock()
		stopChecks()
		e.shutdown(why.reason, task, kill)
	}
	<-e.done

	if res == nil {
		return nil, runErr
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	out := &Result{Task: res, State: res.State, Reason: exitReasons[res.State], Health: e.health}
	if why == nil {
		return out, runErr
	}
	out.State, out.Reason = why.state, why.reason
	var te *thermos.TaskError
	if errors.As(runErr, &te) && te.State == why.state {
		return out, runErr
	}
	return out, &TaskError{State: why.state, Reason: why.reason, Runner: runErr}
}

func (e *executor) abortNow() { e.abortOnce.Do(func() { close(e.abort) }) }

// shutdown kills the task as AuroraExecutor._shutdown does once the health
// checker stopped: the HTTP lifecycle (HttpLifecycleManager._terminate_http)
// when the task is active and its lifecycle port bound, then the runner's
// kill, aborted when the runner is not done within StopTimeout.
func (e *executor) shutdown(reason string, task *activeTask, kill func()) {
	if task != nil && e.cfg.lifecycle {
		if e.lifecycle(reason, task) {
			return // the task ended
		}
	}
	kill()
	e.killing(KillStep{Reason: reason, Message: "the runner's kill: SIGTERM to the processes, then the final processes"})
	timer := time.NewTimer(e.opts.StopTimeout)
	defer timer.Stop()
	select {
	case <-e.done:
		return
	case <-e.opts.Abort:
	case <-timer.C:
		e.killing(KillStep{Reason: reason, Message: fmt.Sprintf("the runner did not stop within %s: aborting", e.opts.StopTimeout)})
	}
	e.abortNow()
}

// lifecycle POSTs to the lifecycle endpoints in turn; after one that
// answered it waits its time for the task to end. It reports whether the
// task ended (or was aborted).
func (e *executor) lifecycle(reason string, task *activeTask) bool {
	in := e.cfg.node(task.status.TaskID, task.status.Ports)
	http := field(e.cfg.root, "lifecycle", "http")
	port, ok := task.ports[str(in, field(http, "port"))]
	if !ok {
		return false // no port to signal: HttpLifecycleManager is not used
	}
	steps := []struct {
		endpoint string
		wait     time.Duration
	}{
		{str(in, field(http, "graceful_shutdown_endpoint")), e.cfg.gracefulWait},
		{str(in, field(http, "shutdown_endpoint")), e.cfg.abortWait},
	}
	for _, s := range steps {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-e.opts.Abort:
				cancel()
			case <-ctx.Done():
			}
		}()
		handled, msg := httpSignal(ctx, port, s.endpoint, true, "", 0, httpTimeout)
		cancel()
		e.killing(KillStep{Reason: reason, Endpoint: s.endpoint, Handled: handled, Wait: s.wait, Message: msg})
		if !handled {
			if aborted(e.opts.Abort) {
				e.abortNow()
				return true
			}
			continue
		}
		timer := time.NewTimer(s.wait)
		select {
		case <-e.done:
			timer.Stop()
			return true
		case <-e.opts.Abort:
			timer.Stop()
			e.abortNow()
			return true
		case <-timer.C:
		}
	}
	return false
}

func aborted(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// newActive makes the task's health checker once it is active
// (HealthCheckerProvider.from_assigned_task): shell when the job has a
// shell checker, HTTP when it has a health port, else none.
func (e *executor) newActive(st thermos.TaskStatus) *activeTask {
	task := &activeTask{status: st, ports: e.cfg.ports(st.TaskID, st.Ports),
		health: Health{Checker: CheckerOff, State: HealthRunning}}
	hc := field(e.cfg.root, "health_check_config", "health_checker")
	in := e.cfg.node(st.TaskID, st.Ports)
	timeout := time.Duration(e.cfg.timeout * float64(time.Second))
	h := &task.health
	switch {
	case e.opts.NoHealthChecks:
	case e.cfg.shell:
		h.Checker, h.State = CheckerShell, HealthStarting
		command := str(in, field(hc, "shell", "shell_command"))
		dir := filepath.Dir(st.Sandbox)
		task.check = func(ctx context.Context) (bool, string) { return shellCheck(ctx, command, dir, timeout) }
	default:
		port, ok := task.ports["health"]
		if !ok {
			h.Checker, h.Reason = CheckerNone, reasonNoCheck
			break
		}
		h.Checker, h.State = CheckerHTTP, HealthStarting
		endpoint := str(in, field(hc, "http", "endpoint"))
		expected := str(in, field(hc, "http", "expected_response"))
		code, err := number(in, field(hc, "http", "expected_response_code"), "expected_response_code")
		if err != nil {
			code = 0
		}
		task.check = func(ctx context.Context) (bool, string) {
			return httpSignal(ctx, port, endpoint, false, expected, int64(code), timeout)
		}
	}
	return task
}

// checkHealth runs the task's health checker until ctx ends or the task
// fails its check, which it sends on failed: a check at once, then one
// interval_secs after each (ThreadedHealthChecker.run).
func (e *executor) checkHealth(ctx context.Context, task *activeTask, failed chan<- string) {
	if task.check == nil {
		return
	}
	h := task.health
	do := snoozable(task.status.Sandbox, task.check, &h.Snoozed)
	t := newTracker(e.cfg)
	interval := time.Duration(e.cfg.interval * float64(time.Second))
	for {
		t.round(ctx, do, &h)
		if ctx.Err() != nil {
			return // stopped during the check: its outcome does not count
		}
		h.State, h.Failures = t.state(), t.failures
		if t.failed {
			h.Reason = t.reason
		}
		e.healthChanged(h)
		if t.failed {
			failed <- t.reason
			return
		}
		timer := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

func (e *executor) healthChanged(h Health) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.health = h
	if e.obs != nil {
		e.obs.HealthChanged(h)
	}
}

func (e *executor) killing(k KillStep) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.obs != nil {
		e.obs.Killing(k)
	}
}

// runnerObserver is the runner's observer: it tells the executor when the
// task is active, and reports the task's end as the executor decided it.
type runnerObserver executor

func (o *runnerObserver) TaskChanged(s thermos.TaskStatus) {
	e := (*executor)(o)
	var task *activeTask
	if s.State == thermos.TaskActive {
		task = e.newActive(s)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if s.State.Terminal() && e.verdict != nil {
		s.State = e.verdict.state
	}
	if e.obs != nil {
		e.obs.TaskChanged(s)
	}
	if task != nil {
		// Here, not in the checker's goroutine, so that the kill finds
		// the ports and the checker shows before the processes start.
		e.task, e.health = task, task.health
		if e.obs != nil {
			e.obs.HealthChanged(task.health)
		}
		e.active <- task // buffered: ACTIVE comes once
	}
}

func (o *runnerObserver) ProcessChanged(s thermos.ProcessStatus) {
	e := (*executor)(o)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.obs != nil {
		e.obs.ProcessChanged(s)
	}
}
