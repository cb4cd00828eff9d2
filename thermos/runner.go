package thermos

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nix-aurora/nix-aurora/aurora"
	"github.com/nix-aurora/nix-aurora/internal/human"
)

// Options says where and how the task instance runs.
type Options struct {
	// Sandbox is the directory the processes run in, created if missing.
	// Required.
	Sandbox string
	// Instance is the instance to run ({{mesos.instance}}), from 0 to the
	// job's instances - 1.
	Instance int
	// Hostname is {{mesos.hostname}}; empty means os.Hostname().
	Hostname string
	// TaskID is {{thermos.task_id}}; empty means one made as the scheduler
	// makes them: ROLE-ENVIRONMENT-NAME-INSTANCE-UUID.
	TaskID string
	// Observer, when set, receives the task's progress.
	Observer Observer
	// Abort, when closed, ends the task at once: what runs gets SIGKILL and
	// what is left of finalization is skipped (say, a second Ctrl-C).
	// Cancelling Run's context is the graceful kill.
	Abort <-chan struct{}
	// KillWait is how long a kill (cancelling Run's context) gives the
	// task, from the kill, to end what runs and run its final processes
	// before what is left gets SIGKILL: Thermos' preemption wait, in place
	// of the task's finalization_wait. Zero means DefaultKillWait.
	KillWait time.Duration
}

// DefaultKillWait is the deadline Thermos' runner gives a killed task
// (TaskRunner.kill's preemption_wait, on the executor's SIGUSR1).
const DefaultKillWait = time.Minute

// Result is how the task ended.
type Result struct {
	TaskID  string
	Sandbox string
	State   TaskState
	// Ports are the ports given to {{thermos.ports[NAME]}}, by name.
	Ports map[string]int
	// Processes are the task's processes, in the task's order.
	Processes []ProcessResult
}

// ProcessResult is what became of one process.
type ProcessResult struct {
	Name  string
	Final bool
	// Cmdline is the cmdline as run, its bindings expanded.
	Cmdline string
	// State is the state of the last run (WAITING if it never started).
	State ProcessState
	// Runs are the runs that ended, in order.
	Runs []ProcessStatus
}

// Process returns the result of the process called name.
func (r *Result) Process(name string) (ProcessResult, bool) {
	for _, p := range r.Processes {
		if p.Name == name {
			return p, true
		}
	}
	return ProcessResult{}, false
}

// TaskError is the error Run returns for a task that did not succeed.
type TaskError struct {
	State TaskState // TaskFailed or TaskKilled
	// Reasons say which processes failed, and which never ran for it.
	Reasons []string
}

func (e *TaskError) Error() string {
	msg := "task " + e.State.String()
	if len(e.Reasons) > 0 {
		msg += ": " + strings.Join(e.Reasons, "; ")
	}
	return msg
}

// proc is one process of the task.
type proc struct {
	name    string
	cmdline string
	final   bool
	plan    *plan
	pp      *planProc
	next    int             // the next run's number
	runs    []ProcessStatus // runs that ended
	last    ProcessStatus
}

type runner struct {
	taskID  string
	ports   map[string]int
	sandbox string
	user    string
	obs     Observer
	abort   <-chan struct{}

	procs            []*proc
	byName           map[string]*proc
	regular, final   *plan
	maxConcurrency   int64
	maxFailures      int64
	finalizationWait time.Duration
	killWait         time.Duration
	// deadline ends cleaning and finalization: finalization_wait after
	// the natural end, or killWait after a kill.
	deadline time.Time

	live  map[*procRun]bool
	exits chan exitEvent
	wg    sync.WaitGroup

	killed bool // the context was cancelled: the task ends KILLED
}

// Run runs instance opts.Instance of the job's task in opts.Sandbox and
// returns once the task reached a terminal state and every process it
// started is gone. A task that failed or was killed comes with a
// *TaskError (and the Result); any other error means nothing ran (an
// invalid task, a reference that cannot be bound, a sandbox that cannot be
// made). Run checks what Thermos checks of a task, not all of Aurora's
// rules: validate a job with aurora.ValidateDocument or Job.Validate first.
func Run(ctx context.Context, job aurora.Job, opts Options) (*Result, error) {
	if opts.Sandbox == "" {
		return nil, errors.New("thermos: no sandbox directory given")
	}
	if n := job.InstanceCount(); opts.Instance < 0 || int64(opts.Instance) >= n {
		return nil, fmt.Errorf("instance %d: the job has %d instance(s), 0 to %d", opts.Instance, n, n-1)
	}
	hostname := opts.Hostname
	if hostname == "" {
		var err error
		if hostname, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("hostname for {{mesos.hostname}}: %w", err)
		}
	}
	taskID := opts.TaskID
	if taskID == "" {
		taskID = newTaskID(job, opts.Instance)
	}
	ports := newPortAllocator()
	task, err := bindTask(job, &bindings{taskID: taskID, hostname: hostname, instance: opts.Instance, ports: ports})
	ports.close()
	if err != nil {
		return nil, err
	}
	if err := checkTask(task); err != nil {
		return nil, err
	}
	regular, err := newPlan(task, func(p *aurora.Process) bool { return !p.IsFinal() })
	if err != nil {
		return nil, fmt.Errorf("invalid task: %w", err)
	}
	final, err := newPlan(task, func(p *aurora.Process) bool { return p.IsFinal() })
	if err != nil {
		return nil, fmt.Errorf("invalid task: %w", err)
	}

	sandbox, err := filepath.Abs(opts.Sandbox)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(sandbox, 0o755); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}

	r := &runner{
		taskID:           taskID,
		ports:            ports.ports,
		sandbox:          sandbox,
		user:             currentUser(),
		obs:              opts.Observer,
		abort:            opts.Abort,
		byName:           map[string]*proc{},
		regular:          regular,
		final:            final,
		maxConcurrency:   intOr(task.MaxConcurrency, 0),
		maxFailures:      intOr(task.MaxFailures, 1),
		finalizationWait: time.Duration(intOr(task.FinalizationWait, 30)) * time.Second,
		killWait:         cmp.Or(opts.KillWait, DefaultKillWait),
		live:             map[*procRun]bool{},
		exits:            make(chan exitEvent),
	}
	for _, p := range task.Processes {
		pr := &proc{name: *p.Name, cmdline: *p.Cmdline, final: p.IsFinal()}
		pr.plan = regular
		if pr.final {
			pr.plan = final
		}
		pr.pp = pr.plan.procs[pr.name]
		pr.last = ProcessStatus{Process: pr.name, Final: pr.final, State: ProcessWaiting}
		r.procs = append(r.procs, pr)
		r.byName[pr.name] = pr
	}

	state := r.run(ctx)

	res := &Result{TaskID: taskID, Sandbox: sandbox, State: state, Ports: ports.ports}
	for _, p := range r.procs {
		res.Processes = append(res.Processes, ProcessResult{
			Name: p.name, Final: p.final, Cmdline: p.cmdline, State: p.last.State, Runs: p.runs,
		})
	}
	if state != TaskSuccess {
		return res, &TaskError{State: state, Reasons: r.reasons()}
	}
	return res, nil
}

// processName is Aurora's rule for process names; it also keeps a
// process's log directory inside the sandbox.
var processName = regexp.MustCompile(`^[^./][^/]*$`)

// checkTask checks what Thermos needs of a task (ThermosTaskValidator), for
// jobs that did not go through aurora.Validate.
func checkTask(task *aurora.Task) error {
	seen := map[string]bool{}
	for i, p := range task.Processes {
		if p.Name == nil || *p.Name == "" {
			return fmt.Errorf("invalid task: process %d has no name", i)
		}
		if !processName.MatchString(*p.Name) {
			return fmt.Errorf("invalid task: process name %q: it may not start with '.' nor hold '/'", *p.Name)
		}
		if p.Cmdline == nil {
			return fmt.Errorf("invalid task: process %s has no cmdline", *p.Name)
		}
		if seen[*p.Name] {
			return fmt.Errorf("invalid task: two processes are called %s", *p.Name)
		}
		seen[*p.Name] = true
	}
	return nil
}

// newTaskID makes an id as Aurora's scheduler does: role, environment, job
// name, instance and a UUID, joined with "-".
func newTaskID(job aurora.Job, instance int) string {
	key := strings.SplitN(job.Key(), "/", 4) // cluster/role/environment/name
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	uuid := fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	parts := append(key[1:], strconv.Itoa(instance), uuid)
	return strings.Join(parts, "-")
}

// currentUser is USER and LOGNAME for the processes.
func currentUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return strconv.Itoa(os.Getuid())
}

// run takes the task through its stages (TaskRunner._run) and returns its
// terminal state.
func (r *runner) run(ctx context.Context) TaskState {
	defer r.shutdown()
	r.taskChanged(TaskActive)
	for _, p := range r.procs {
		r.processChanged(p, p.last)
	}
	aborted := r.active(ctx)

	// CLEANING: SIGTERM to what runs. The deadline is finalization_wait
	// from now, or the kill's own (TaskRunner._finalization_remaining).
	r.taskChanged(TaskCleaning)
	r.deadline = time.Now().Add(r.finalizationWait)
	if r.killed {
		r.deadline = time.Now().Add(r.killWait)
	}
	if !aborted {
		for run := range r.live {
			run.terminate()
		}
		aborted = !r.drain(ctx)
	}
	r.killAll()

	// FINALIZING, unless the deadline passed while cleaning.
	if !aborted && time.Now().Before(r.deadline) {
		r.taskChanged(TaskFinalizing)
		r.finalize(ctx)
		r.killAll()
	}

	state := TaskSuccess
	switch {
	case r.killed:
		state = TaskKilled
	case !r.healthy():
		state = TaskFailed
	}
	r.taskChanged(state)
	return state
}

// active runs the regular plan (TaskRunnerStage_ACTIVE) until it is
// complete, unhealthy, or the task is killed. It reports an abort.
func (r *runner) active(ctx context.Context) (aborted bool) {
	for {
		if ctx.Err() != nil {
			r.killed = true
			return false
		}
		now := time.Now()
		r.launch(r.regular, now)
		if r.regular.complete() || !r.healthy() {
			return false
		}
		var timer <-chan time.Time
		if w, ok := r.regular.minWait(now); ok {
			timer = time.After(w)
		}
		select {
		case ev := <-r.exits:
			r.exited(ev, r.regular)
		case <-timer:
		case <-ctx.Done():
			r.killed = true
			return false
		case <-r.abort:
			r.killed = true
			return true
		}
	}
}

// healthy is TaskRunner.is_healthy: the regular plan is not deadlocked and
// fewer processes failed than the task's max_failures (0: no limit).
func (r *runner) healthy() bool {
	if r.regular.deadlocked() {
		return false
	}
	return r.maxFailures == 0 || int64(len(r.regular.failed())) < r.maxFailures
}

// drain waits for the processes that got SIGTERM (TaskRunnerStage_CLEANING).
// It reports false when the deadline passed, or on abort, with some still
// running.
func (r *runner) drain(ctx context.Context) bool {
	timer := time.NewTimer(time.Until(r.deadline))
	defer timer.Stop()
	done := ctx.Done()
	if r.killed {
		done = nil // the kill's deadline is set
	}
	for len(r.live) > 0 {
		select {
		case ev := <-r.exits:
			r.exited(ev, nil)
		case <-timer.C:
			return false
		case <-r.abort:
			r.killed = true
			return false
		case <-done:
			done = nil
			r.kill(timer)
		}
	}
	return true
}

// kill is a kill while the task is cleaning or finalizing: TaskRunner.kill
// replaces the deadline by its own, from now, and the task ends KILLED.
func (r *runner) kill(timer *time.Timer) {
	r.killed = true
	r.deadline = time.Now().Add(r.killWait)
	timer.Reset(time.Until(r.deadline))
}

// finalize runs the final plan (TaskRunnerStage_FINALIZING) until it is
// complete or deadlocked, or the deadline passes.
func (r *runner) finalize(ctx context.Context) {
	timer := time.NewTimer(time.Until(r.deadline))
	defer timer.Stop()
	done := ctx.Done()
	if r.killed {
		done = nil // the kill's deadline is set
	}
	for {
		now := time.Now()
		r.launch(r.final, now)
		if r.final.complete() || r.final.deadlocked() {
			return
		}
		var wait <-chan time.Time
		if w, ok := r.final.minWait(now); ok {
			wait = time.After(w)
		}
		select {
		case ev := <-r.exits:
			r.exited(ev, r.final)
		case <-wait:
		case <-timer.C:
			return
		case <-r.abort:
			r.killed = true
			return
		case <-done:
			done = nil
			r.kill(timer)
		}
	}
}

// launch starts the plan's runnable processes, no more than the task's
// max_concurrency running at once (TaskRunner._run_plan).
func (r *runner) launch(pl *plan, now time.Time) {
	runnable := pl.runnable(now)
	if r.maxConcurrency > 0 {
		n := max(int(r.maxConcurrency)-pl.running(), 0)
		runnable = runnable[:min(n, len(runnable))]
	}
	for _, pp := range runnable {
		p := r.byName[pp.name]
		seq := p.next
		p.next++
		pl.setRunning(pp)
		run, err := r.startRun(p, seq)
		if err != nil {
			// Process.start raised: Thermos marks the run FAILED.
			pl.addFailure(pp, now)
			r.ended(p, ProcessStatus{Process: p.name, Final: p.final, Run: seq, State: ProcessFailed,
				Message: "cannot start: " + err.Error()}, pl)
			continue
		}
		r.live[run] = true
		r.processChanged(p, ProcessStatus{Process: p.name, Final: p.final, Run: seq, State: ProcessRunning, Start: run.start})
	}
}

// exited records the end of a run (TaskRunnerProcessHandler). current is
// the plan being run, whose processes are planned again; nil while cleaning.
func (r *runner) exited(ev exitEvent, current *plan) {
	run := ev.run
	delete(r.live, run)
	p := run.proc
	st := ProcessStatus{Process: p.name, Final: p.final, Run: run.seq, ExitCode: ev.code,
		Start: run.start, Duration: ev.end.Sub(run.start)}
	switch {
	case ev.startErr != nil:
		// As a run that could not start at all (see launch).
		st.State, st.Message, st.Start, st.Duration = ProcessFailed, "cannot start: "+ev.startErr.Error(), time.Time{}, 0
		p.plan.addFailure(p.pp, ev.end)
	case ev.err != nil:
		st.State, st.Message = ProcessLost, ev.err.Error()
		p.plan.lost(p.pp, ev.end)
	case ev.sig:
		// A run killed by a signal is not counted as a failure: Thermos
		// marks it KILLED and plans it again (on_killed → planner.lost).
		st.State = ProcessKilled
		p.plan.lost(p.pp, ev.end)
	case ev.code == 0:
		st.State = ProcessSuccess
		p.plan.addSuccess(p.pp, ev.end)
	default:
		st.State = ProcessFailed
		p.plan.addFailure(p.pp, ev.end)
	}
	r.ended(p, st, current)
}

// ended reports a run that ended, and the next run if there is to be one.
func (r *runner) ended(p *proc, st ProcessStatus, current *plan) {
	p.runs = append(p.runs, st)
	r.processChanged(p, st)
	if p.plan == current && p.pp.state == planIdle {
		r.processChanged(p, ProcessStatus{Process: p.name, Final: p.final, Run: p.next, State: ProcessWaiting})
	}
}

// killAll sends SIGKILL to every run still alive and waits for them.
func (r *runner) killAll() {
	for run := range r.live {
		run.kill()
	}
	for len(r.live) > 0 {
		r.exited(<-r.exits, nil)
	}
}

// shutdown is the last resort, should run panic: nothing outlives Run.
func (r *runner) shutdown() {
	for run := range r.live {
		run.kill()
	}
	for len(r.live) > 0 {
		delete(r.live, (<-r.exits).run)
	}
	r.wg.Wait()
}

func (r *runner) taskChanged(s TaskState) {
	if r.obs != nil {
		r.obs.TaskChanged(TaskStatus{State: s, TaskID: r.taskID, Sandbox: r.sandbox, Ports: maps.Clone(r.ports)})
	}
}

func (r *runner) processChanged(p *proc, st ProcessStatus) {
	p.last = st
	if r.obs != nil {
		r.obs.ProcessChanged(st)
	}
}

// reasons explain a task that did not succeed.
func (r *runner) reasons() []string {
	var out []string
	if r.killed {
		out = append(out, "interrupted (the run was cancelled) before it ended")
	}
	for _, p := range r.procs {
		if p.final || p.pp.state != planFailed {
			continue
		}
		msg := fmt.Sprintf("process %s failed", p.name)
		if n := len(p.runs); n > 0 {
			last := p.runs[n-1]
			switch {
			case last.Message != "":
				msg += " (" + last.Message + ")"
			case last.ExitCode < 0:
				msg += fmt.Sprintf(" (signal %d)", -last.ExitCode)
			default:
				msg += fmt.Sprintf(" (exit %d)", last.ExitCode)
			}
			msg += " after " + human.Count(int64(n), "run", "")
		}
		out = append(out, msg)
	}
	for _, p := range r.procs {
		if p.final || r.killed || p.next > 0 {
			continue
		}
		var blockers []string
		for _, d := range p.pp.deps {
			if r.byName[d].pp.state != planFinished {
				blockers = append(blockers, d)
			}
		}
		if len(blockers) > 0 {
			out = append(out, fmt.Sprintf("process %s never ran: it follows %s", p.name, strings.Join(blockers, ", ")))
		}
	}
	return out
}
