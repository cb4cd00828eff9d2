package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/spf13/pflag"

	"github.com/nix-aurora/nix-aurora/aurora"
	"github.com/nix-aurora/nix-aurora/executor"
	"github.com/nix-aurora/nix-aurora/internal/human"
	"github.com/nix-aurora/nix-aurora/thermos"
)

// defaultNixInit is the command the job library gives init processes
// unless the job says otherwise: the cluster-wide profile's nix-init.
const defaultNixInit = "/nix/var/nix/profiles/default/bin/nix-init"

type runOptions struct {
	sandbox        string
	instance       int
	job            string
	nixInit        string
	noHealthChecks bool
	expr           exprOptions
}

func init() {
	var opts runOptions
	register(&command{
		name:  "run",
		usage: "[JOB.nix|JOB.json|DIR]",
		summary: "Run one instance of a job's task on this machine as Aurora's executor and Thermos run it\n" +
			"on a node: order, retries, daemons, ephemeral and final processes, finalization; each\n" +
			"process in the sandbox with Thermos' environment, its output in\n" +
			"SANDBOX/.logs/NAME/RUN/{stdout,stderr}. The job's health check runs as the executor runs\n" +
			"it (HTTP on the health port, or shell): the task is RUNNING once it passes, and fails when\n" +
			"it fails more than max_consecutive_failures times in a row.\n" +
			"A .json file is validated and run; anything else is built with nix-build first.\n" +
			"Ctrl-C (SIGTERM) kills the task as Aurora does: POST /quitquitquit, then\n" +
			"/abortabortabort to the health port (when there is one), then SIGTERM to each process's\n" +
			"top pid and the final processes, within the runner's minute; a second Ctrl-C kills at once.\n" +
			"Exit status 1 when the task failed (a failed health check included) or was killed.",
		flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&opts.sandbox, "sandbox", "", "run in this directory, created if missing (default: a new temporary directory)")
			fs.IntVar(&opts.instance, "instance", 0, "the instance to run ({{mesos.instance}})")
			fs.StringVar(&opts.job, "job", "", "CLUSTER/ROLE/ENV/NAME (or NAME): the job to run, when the file holds several")
			fs.StringVar(&opts.nixInit, "nix-init", "", "run this program where a cmdline starts with "+defaultNixInit+
				" (default: that one if installed, else the nix-init beside nixaurora, else the one on PATH)")
			fs.BoolVar(&opts.noHealthChecks, "no-health-checks", false, "run no health check: the task is RUNNING at once (for a quick try; the kill still uses the HTTP lifecycle)")
			opts.expr.addFlags(fs)
		},
		run: func(ctx context.Context, e *env, args []string) error { return runRun(ctx, e, opts, args) },
	})
}

func runRun(ctx context.Context, e *env, opts runOptions, args []string) error {
	file := "."
	switch len(args) {
	case 0:
	case 1:
		file = args[0]
	default:
		return usagef("run takes one JOB.nix, JOB.json or DIR, got %d", len(args))
	}
	if opts.instance < 0 {
		return usagef("--instance %d: instances count from 0", opts.instance)
	}
	if isJSON(file) && opts.expr.set() {
		return usagef("-A, --arg and --argstr are for Nix expressions, not for %s", file)
	}
	jobs, err := loadJobs(ctx, e, file, opts.expr, true)
	if err != nil {
		return err
	}
	job, err := pickRunJob(jobs, opts.job)
	if err != nil {
		return err
	}
	if n := job.InstanceCount(); int64(opts.instance) >= n {
		return usagef("--instance %d: job %s has %s, 0 to %d", opts.instance, job.Key(), human.Count(n, "instance", ""), n-1)
	}
	nixInit := opts.nixInit
	if nixInit == "" && usesDefaultNixInit(job) {
		if _, err := os.Stat(profileNixInit); err != nil {
			// A first try on a laptop: the profile has none, but nix-init is
			// often installed with nixaurora, or on PATH.
			if path, where := localNixInit(); path != "" {
				fmt.Fprintf(e.stderr, "nixaurora run: %s is not installed here; using %s (%s)\n", profileNixInit, path, where)
				nixInit = path
			}
		}
	}
	if nixInit != "" {
		if job, err = withNixInit(job, nixInit); err != nil {
			return err
		}
	}

	sandbox := opts.sandbox
	if sandbox == "" {
		if sandbox, err = os.MkdirTemp("", "nixaurora-run-"); err != nil {
			return err
		}
	}

	// The first SIGINT/SIGTERM cancels ctx (main's signal.NotifyContext):
	// the task is killed gracefully. A second one aborts the finalization.
	abort := make(chan struct{})
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(signals)
	stopSignals := make(chan struct{})
	defer close(stopSignals)
	view := newStatusView(e.stdout, job.Key(), opts.instance)
	go func() {
		for n := 0; ; {
			select {
			case <-signals:
				if n++; n == 1 {
					view.note("killing the task: its HTTP lifecycle endpoints if it has a health port, then SIGTERM to its processes, then its final processes (Ctrl-C again to kill at once)")
				} else {
					close(abort)
					return
				}
			case <-stopSignals:
				return
			}
		}
	}()

	view.start()
	res, runErr := executor.Run(ctx, job, executor.Options{
		Sandbox:        sandbox,
		Instance:       opts.instance,
		Observer:       view,
		Abort:          abort,
		NoHealthChecks: opts.noHealthChecks,
	})
	view.stop()
	if res == nil { // nothing ran
		if opts.sandbox == "" {
			os.Remove(sandbox)
		}
		return runErr
	}
	view.summary(res)
	if runErr != nil {
		explainFailures(e.stderr, res.Task)
	}
	return runErr
}

// pickRunJob returns the job that key names (its CLUSTER/ROLE/ENV/NAME, or its
// name), or the only job when key is empty.
func pickRunJob(jobs []aurora.Job, key string) (aurora.Job, error) {
	var keys []string
	for _, j := range jobs {
		keys = append(keys, j.Key())
	}
	sort.Strings(keys)
	if key == "" {
		if len(jobs) == 1 {
			return jobs[0], nil
		}
		return aurora.Job{}, usagef("the file holds %d jobs; pick one with --job KEY: %s", len(jobs), strings.Join(keys, ", "))
	}
	var found []aurora.Job
	for _, j := range jobs {
		if j.Key() == key || j.JobName() == key {
			found = append(found, j)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return aurora.Job{}, usagef("--job %s: no such job; the file holds %s", key, strings.Join(keys, ", "))
	}
	return aurora.Job{}, usagef("--job %s names %d jobs: give CLUSTER/ROLE/ENV/NAME (%s)", key, len(found), strings.Join(keys, ", "))
}

// profileNixInit is where run looks for the default nix-init: a variable
// so that tests can play a machine without one.
var profileNixInit = defaultNixInit

// executable and lookPath are os.Executable and exec.LookPath, variables
// for the tests.
var (
	executable = os.Executable
	lookPath   = exec.LookPath
)

// usesDefaultNixInit reports whether a cmdline of job calls the default
// nix-init.
func usesDefaultNixInit(job aurora.Job) bool {
	if job.Task == nil {
		return false
	}
	for _, p := range job.Task.Processes {
		if p.Cmdline != nil && defaultNixInitWord.MatchString(*p.Cmdline) {
			return true
		}
	}
	return false
}

// localNixInit finds a nix-init for a machine whose profile has none: the
// one installed beside nixaurora (scripts and packages install both in one
// bin directory), else the first on PATH. It returns the path and where it
// was found, or "" when there is none.
func localNixInit() (path, where string) {
	if exe, err := executable(); err == nil {
		beside := filepath.Join(filepath.Dir(exe), "nix-init")
		if isExecutableFile(beside) {
			return beside, "installed beside nixaurora"
		}
	}
	if p, err := lookPath("nix-init"); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		return p, "from PATH"
	}
	return "", ""
}

func isExecutableFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// withNixInit returns a copy of job whose cmdlines that start with the
// default nix-init start with path instead.
func withNixInit(job aurora.Job, path string) (aurora.Job, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return job, err
	}
	if job.Task == nil {
		return job, nil
	}
	task := *job.Task
	task.Processes = append([]aurora.Process(nil), task.Processes...)
	for i, p := range task.Processes {
		if p.Cmdline == nil {
			continue
		}
		// The init processes start with it, and templated files call it
		// inside $(...): replace it wherever it stands as a word.
		c := defaultNixInitWord.ReplaceAllString(*p.Cmdline, "${1}"+strings.ReplaceAll(shellWord(abs), "$", "$$"))
		task.Processes[i].Cmdline = &c
	}
	job.Task = &task
	return job, nil
}

var defaultNixInitWord = regexp.MustCompile(`(^|[\s(;|&])` + regexp.QuoteMeta(defaultNixInit) + `(?:$|\b)`)

var shellSafeWord = regexp.MustCompile(`^[A-Za-z0-9@%+=:,./_-]+$`)

func shellWord(s string) string {
	if shellSafeWord.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// explainFailures shows the end of the stderr of each process whose last
// run failed, and a hint when nix-init is missing.
func explainFailures(w io.Writer, res *thermos.Result) {
	for _, p := range res.Processes {
		if len(p.Runs) == 0 || p.State != thermos.ProcessFailed {
			continue
		}
		last := p.Runs[len(p.Runs)-1]
		log := filepath.Join(res.Sandbox, ".logs", p.Name, fmt.Sprint(last.Run), "stderr")
		if tail := logTail(log, 10); len(tail) > 0 {
			fmt.Fprintf(w, "%s: the end of %s:\n", last, log)
			for _, line := range tail {
				fmt.Fprintf(w, "  | %s\n", line)
			}
		}
		if last.ExitCode == 127 && strings.HasPrefix(p.Cmdline, defaultNixInit) {
			if _, err := os.Stat(profileNixInit); err != nil {
				fmt.Fprintf(w, "hint: %s is not installed here, nor beside nixaurora or on PATH; install nix-init "+
					"in the default profile, or pass --nix-init PATH to use another one\n", defaultNixInit)
			}
		}
	}
}

func logTail(file string, n int) []string {
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines
}

// statusView shows the task's progress: on a terminal, one line per
// process redrawn in place; otherwise one line per change.
type statusView struct {
	mu       sync.Mutex
	w        io.Writer
	tty      bool
	key      string
	instance int
	begin    time.Time
	task     thermos.TaskState
	health   *executor.Health // nil until the task is active
	names    []string
	status   map[string]thermos.ProcessStatus
	failures map[string]int
	width    int
	drawn    int // lines of the live block on screen
	done     chan struct{}
	wg       sync.WaitGroup
}

func newStatusView(w io.Writer, key string, instance int) *statusView {
	return &statusView{w: w, tty: writerIsTerminal(w), key: key, instance: instance,
		status: map[string]thermos.ProcessStatus{}, failures: map[string]int{}, done: make(chan struct{})}
}

// writerIsTerminal reports whether w is a character device (a terminal).
func writerIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// terminalWidth is the number of columns of the terminal w (80 if unknown).
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 80
	}
	var ws struct{ rows, cols, x, y uint16 }
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), uintptr(syscall.TIOCGWINSZ), uintptr(unsafe.Pointer(&ws)))
	if errno != 0 || ws.cols < 20 {
		return 80
	}
	return int(ws.cols)
}

func (v *statusView) start() {
	v.begin = time.Now()
	if !v.tty {
		return
	}
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				v.mu.Lock()
				v.redraw()
				v.mu.Unlock()
			case <-v.done:
				return
			}
		}
	}()
}

func (v *statusView) stop() {
	close(v.done)
	v.wg.Wait()
	v.mu.Lock()
	defer v.mu.Unlock()
	v.redraw()
}

// note prints a message above the live block.
func (v *statusView) note(msg string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.clear()
	fmt.Fprintln(v.w, msg)
	v.redraw()
}

func (v *statusView) TaskChanged(s thermos.TaskStatus) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.task = s.State
	if s.State == thermos.TaskActive {
		fmt.Fprintf(v.w, "task %s (%s, instance %d)\nsandbox %s\n", s.TaskID, v.key, v.instance, s.Sandbox)
		if len(s.Ports) > 0 {
			var ports []string
			for name, port := range s.Ports {
				ports = append(ports, fmt.Sprintf("%s=%d", name, port))
			}
			sort.Strings(ports)
			fmt.Fprintf(v.w, "ports %s\n", strings.Join(ports, " "))
		}
		return
	}
	if v.tty {
		v.redraw()
		return
	}
	fmt.Fprintf(v.w, "%s task %s\n", v.clock(), s.State)
}

func (v *statusView) ProcessChanged(s thermos.ProcessStatus) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.status[s.Process]; !ok {
		v.names = append(v.names, s.Process)
		v.width = max(v.width, len(s.Process))
	}
	v.status[s.Process] = s
	if s.State == thermos.ProcessFailed {
		v.failures[s.Process]++
	}
	if v.tty {
		v.redraw()
		return
	}
	if s.State == thermos.ProcessWaiting && s.Run == 0 {
		return // every process starts so
	}
	fmt.Fprintf(v.w, "%s %s\n", v.clock(), s)
}

func (v *statusView) clock() string {
	return fmt.Sprintf("[%6.1fs]", time.Since(v.begin).Seconds())
}

// line is the live line of one process.
func (v *statusView) line(s thermos.ProcessStatus) string {
	name := s.Process
	if s.Final {
		name += " (final)"
	}
	out := fmt.Sprintf("  %-*s  %-8s run %d", v.width+8, name, s.State, s.Run)
	switch s.State {
	case thermos.ProcessRunning:
		out += "  " + shortDuration(time.Since(s.Start))
	case thermos.ProcessSuccess, thermos.ProcessFailed, thermos.ProcessKilled:
		if s.Start.IsZero() {
			break // it never started: Message says why
		}
		if s.ExitCode < 0 {
			out += fmt.Sprintf("  signal %d", -s.ExitCode)
		} else {
			out += fmt.Sprintf("  exit %d", s.ExitCode)
		}
		out += "  " + shortDuration(s.Duration)
	}
	if n := v.failures[s.Process]; n > 0 {
		out += fmt.Sprintf("  (%s)", human.Count(int64(n), "failed run", ""))
	}
	if s.Message != "" {
		out += "  " + s.Message
	}
	return out
}

func shortDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// clear moves the cursor to the top of the live block and erases it.
func (v *statusView) clear() {
	if !v.tty || v.drawn == 0 {
		return
	}
	fmt.Fprintf(v.w, "\x1b[%dA\r\x1b[J", v.drawn)
	v.drawn = 0
}

// redraw draws the live block again (terminal only).
func (v *statusView) redraw() {
	if !v.tty || len(v.names) == 0 {
		return
	}
	var b strings.Builder
	if v.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", v.drawn)
	}
	head := fmt.Sprintf("task %s  %s", v.task, time.Since(v.begin).Round(100*time.Millisecond))
	if v.health != nil && !v.task.Terminal() {
		head += "  health: " + healthText(*v.health)
	}
	lines := []string{head}
	for _, n := range v.names {
		lines = append(lines, v.line(v.status[n]))
	}
	width := terminalWidth(v.w)
	for _, l := range lines {
		if r := []rune(l); len(r) >= width {
			l = string(r[:width-1]) // a wrapped line would throw the cursor movements off
		}
		b.WriteString("\r\x1b[2K" + l + "\n")
	}
	io.WriteString(v.w, b.String())
	v.drawn = len(lines)
}

// HealthChanged shows the task's health: on a terminal in the task's line;
// otherwise a line when the state changes or a check fails.
func (v *statusView) HealthChanged(h executor.Health) {
	v.mu.Lock()
	defer v.mu.Unlock()
	prev := v.health
	v.health = &h
	if v.tty {
		v.redraw()
		return
	}
	switch {
	case prev == nil && h.Checker == executor.CheckerNone:
		fmt.Fprintf(v.w, "%s health: none (no health port, no shell checker): %s\n", v.clock(), h.Reason)
	case prev == nil && h.Checker == executor.CheckerOff:
		fmt.Fprintf(v.w, "%s health: off (--no-health-checks)\n", v.clock())
	case prev == nil:
		fmt.Fprintf(v.w, "%s health: STARTING (%s checker)\n", v.clock(), h.Checker)
	case h.State == executor.HealthFailed:
		fmt.Fprintf(v.w, "%s health: FAILED: %s\n", v.clock(), h.Reason)
	case !h.Passed && h.Forgiven:
		fmt.Fprintf(v.w, "%s health check failed (forgiven in the initial interval): %s\n", v.clock(), h.Reason)
	case !h.Passed:
		fmt.Fprintf(v.w, "%s health check failed (%s): %s\n", v.clock(), human.Count(h.Failures, "failure", ""), h.Reason)
	case prev.State != h.State:
		fmt.Fprintf(v.w, "%s health: %s after %s\n", v.clock(), h.State, human.Count(int64(h.Checks), "check", ""))
	}
}

// healthText is the health in the task's live line.
func healthText(h executor.Health) string {
	switch {
	case h.Checker == executor.CheckerNone:
		return "none"
	case h.Checker == executor.CheckerOff:
		return "off"
	case h.State == executor.HealthFailed:
		return "FAILED"
	case h.Failures > 0:
		return human.Count(h.Failures, "failure", "")
	case h.Snoozed:
		return h.State.String() + " (snoozed)"
	}
	return h.State.String()
}

// Killing shows each step of the executor's kill.
func (v *statusView) Killing(k executor.KillStep) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.clear()
	switch {
	case k.Endpoint != "" && k.Handled:
		fmt.Fprintf(v.w, "%s kill: POST %s answered; waiting up to %s for the task to end\n", v.clock(), k.Endpoint, shortDuration(k.Wait))
	case k.Endpoint != "":
		fmt.Fprintf(v.w, "%s kill: POST %s: %s\n", v.clock(), k.Endpoint, k.Message)
	default:
		fmt.Fprintf(v.w, "%s kill: %s\n", v.clock(), k.Message)
	}
	v.redraw()
}

// summary ends the output: the task's state, why a task failed its health
// check, and where the logs are.
func (v *statusView) summary(res *executor.Result) {
	v.mu.Lock()
	defer v.mu.Unlock()
	why := ""
	if res.Health.State == executor.HealthFailed {
		why = " (" + res.Reason + ")"
	}
	fmt.Fprintf(v.w, "task %s: %s after %s%s\nlogs: %s\n", res.Task.TaskID, res.State,
		shortDuration(time.Since(v.begin)), why, filepath.Join(res.Task.Sandbox, ".logs", "PROCESS", "RUN", "{stdout,stderr}"))
}

var _ executor.Observer = (*statusView)(nil)
