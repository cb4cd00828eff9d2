package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/aurora"
	"github.com/nix-aurora/nix-aurora/executor"
	"github.com/nix-aurora/nix-aurora/internal/testnix"
	"github.com/nix-aurora/nix-aurora/thermos"
)

// The tests that run the CLI do not call t.Parallel: a command's options
// live in one variable per command (see register), shared by concurrent runs.

// runJob writes a job whose task is given as JSON, as Aurora's client reads it.
func runJob(t *testing.T, name, task string) string {
	t.Helper()
	return runJobWith(t, name, task, "")
}

// runJobWith is runJob with more attributes of the job (JSON members).
func runJobWith(t *testing.T, name, task, job string) string {
	t.Helper()
	if job != "" {
		job = ", " + job
	}
	file := filepath.Join(t.TempDir(), name+".json")
	doc := `{"name": "` + name + `", "role": "www-data", "cluster": "devcluster", "environment": "devel",
		"task": {"resources": {"cpu": 0.1, "ram": 16777216, "disk": 16777216}, ` + task + `}` + job + `}`
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestRunJSON(t *testing.T) {
	file := runJob(t, "greet", `"processes": [
		{"name": "prepare", "cmdline": "echo 'export GREETING=hello' > .thermos_profile"},
		{"name": "greet", "cmdline": "echo $GREETING instance {{mesos.instance}} > greeting"},
		{"name": "bye", "final": true, "cmdline": "touch bye"}],
		"constraints": [{"order": ["prepare", "greet"]}]`)
	sandbox := filepath.Join(t.TempDir(), "sandbox")
	code, out, errOut := runCLI(t, "run", file, "--sandbox", sandbox)
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"sandbox " + sandbox, "prepare run 0: SUCCESS (exit 0)", "greet run 0: RUNNING",
		"greet run 0: SUCCESS (exit 0)", "bye run 0: SUCCESS", "task FINALIZING", ": SUCCESS after", "www-data-devel-greet-0-"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("ANSI sequences in output that is not a terminal:\n%q", out)
	}
	if data, _ := os.ReadFile(filepath.Join(sandbox, "greeting")); string(data) != "hello instance 0\n" {
		t.Errorf("greeting %q", data)
	}
	if _, err := os.Stat(filepath.Join(sandbox, "bye")); err != nil {
		t.Errorf("the final process did not run: %v", err)
	}
}

func TestRunJSONFailing(t *testing.T) {
	file := runJob(t, "broken", `"processes": [
		{"name": "setup", "cmdline": "echo 'no such thing' >&2; exit 3"},
		{"name": "app", "cmdline": "true"}],
		"constraints": [{"order": ["setup", "app"]}]`)
	code, out, errOut := runCLI(t, "run", file, "--sandbox", t.TempDir())
	if code != exitFailure {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "setup run 0: FAILED (exit 3)") || !strings.Contains(out, ": FAILED after") {
		t.Errorf("output does not show the failure:\n%s", out)
	}
	for _, want := range []string{"task FAILED", "process setup failed (exit 3)", "process app never ran: it follows setup", "| no such thing"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

func TestRunTempSandbox(t *testing.T) {
	file := runJob(t, "hello", `"processes": [{"name": "hello", "cmdline": "echo hello"}]`)
	code, out, errOut := runCLI(t, "run", file)
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	_, rest, _ := strings.Cut(out, "sandbox ")
	sandbox, _, _ := strings.Cut(rest, "\n")
	if sandbox == "" {
		t.Fatalf("no sandbox printed:\n%s", out)
	}
	defer os.RemoveAll(sandbox)
	if data, err := os.ReadFile(filepath.Join(sandbox, ".logs", "hello", "0", "stdout")); string(data) != "hello\n" {
		t.Errorf("hello's stdout in the printed sandbox: %q, %v", data, err)
	}
}

func TestRunUsage(t *testing.T) {
	dir := t.TempDir()
	two := filepath.Join(dir, "two.json")
	os.WriteFile(two, []byte(`{"jobs": [
		{"name": "a", "role": "r", "cluster": "c", "environment": "devel",
		 "task": {"processes": [{"name": "p", "cmdline": "true"}], "resources": {"cpu": 1, "ram": 1048576, "disk": 1048576}}},
		{"name": "b", "role": "r", "cluster": "c", "environment": "devel",
		 "task": {"processes": [{"name": "p", "cmdline": "false"}], "resources": {"cpu": 1, "ram": 1048576, "disk": 1048576}}}]}`), 0o644)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"run", two}, exitUsage, "pick one with --job KEY: c/r/devel/a, c/r/devel/b"},
		{[]string{"run", two, "--job", "nope"}, exitUsage, "no such job"},
		{[]string{"run", two, "--job", "a", "--instance", "1"}, exitUsage, "has 1 instance, 0 to 0"},
		{[]string{"run", two, "--job", "a", "--instance", "-1"}, exitUsage, "count from 0"},
		{[]string{"run", two, "-A", "x"}, exitUsage, "for Nix expressions"},
		{[]string{"run", two, two}, exitUsage, "one JOB"},
		{[]string{"run", filepath.Join(dir, "missing.json")}, exitFailure, "missing.json"},
		{[]string{"run", two, "--job", "c/r/devel/a", "--sandbox", filepath.Join(dir, "a")}, exitOK, ""},
		{[]string{"run", two, "--job", "b", "--sandbox", filepath.Join(dir, "b")}, exitFailure, "process p failed (exit 1)"},
	}
	for _, c := range cases {
		code, out, errOut := runCLI(t, c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("%q: exit %d, want %d and %q\n%s%s", c.args, code, c.code, c.want, out, errOut)
		}
	}
}

func TestRunInterrupt(t *testing.T) {
	file := runJob(t, "server", `"finalization_wait": 10, "processes": [
		{"name": "server", "cmdline": "trap 'touch got_term; exit 0' TERM; touch started; sleep 30 & wait"},
		{"name": "cleanup", "final": true, "cmdline": "touch cleaned_up"}]`)
	sandbox := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(filepath.Join(sandbox, "started")); err == nil {
				break
			}
		}
		cancel() // what main's signal.NotifyContext does on Ctrl-C
	}()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := run(ctx, &env{stdout: &stdout, stderr: &stderr}, []string{"run", file, "--sandbox", sandbox})
	if code != exitFailure || !strings.Contains(stderr.String(), "task KILLED") {
		t.Fatalf("exit %d, want 1 and a KILLED task\n%s%s", code, stdout.String(), stderr.String())
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("took %v", d)
	}
	for _, f := range []string{"got_term", "cleaned_up"} {
		if _, err := os.Stat(filepath.Join(sandbox, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestRunHealthCheck(t *testing.T) {
	checks := func(command string) string {
		return `"health_check_config": {"initial_interval_secs": 0.2, "interval_secs": 0.2, "max_consecutive_failures": 1,
			"health_checker": {"shell": {"shell_command": "` + command + `"}}}`
	}
	sick := runJobWith(t, "sick", `"processes": [{"name": "app", "cmdline": "sleep 20"}]`, checks("exit 1"))
	code, out, errOut := runCLI(t, "run", sick, "--sandbox", filepath.Join(t.TempDir(), "sandbox"))
	if code != exitFailure {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
	}
	reason := "Failed health check! Command 'exit 1' returned non-zero exit status 1 with output ''"
	for _, want := range []string{"health: STARTING (shell checker)", "health check failed (forgiven in the initial interval)",
		"health check failed (1 failure): Command 'exit 1'", "health: FAILED: Command 'exit 1'", "task FAILED",
		": FAILED after", "(" + reason + ")"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "task FAILED: "+reason) {
		t.Errorf("stderr lacks the reason:\n%s", errOut)
	}

	// --no-health-checks: the same job runs (here to its end).
	quick := runJobWith(t, "sick", `"processes": [{"name": "app", "cmdline": "sleep 0.5"}]`, checks("exit 1"))
	code, out, errOut = runCLI(t, "run", quick, "--sandbox", t.TempDir(), "--no-health-checks")
	if code != exitOK || !strings.Contains(out, "health: off (--no-health-checks)") || strings.Contains(out, "health check failed") {
		t.Errorf("--no-health-checks: exit %d\n%s%s", code, out, errOut)
	}

	healthy := runJobWith(t, "healthy", `"processes": [{"name": "app", "cmdline": "sleep 1"}]`, checks("true"))
	code, out, errOut = runCLI(t, "run", healthy, "--sandbox", t.TempDir())
	if code != exitOK || !strings.Contains(out, "health: RUNNING after 1 check") {
		t.Errorf("healthy: exit %d\n%s%s", code, out, errOut)
	}

	// No health port and no shell checker: the no-op checker.
	plain := runJob(t, "plain", `"processes": [{"name": "app", "cmdline": "true"}]`)
	code, out, errOut = runCLI(t, "run", plain, "--sandbox", t.TempDir())
	if code != exitOK || !strings.Contains(out, "health: none (no health port, no shell checker)") {
		t.Errorf("plain: exit %d\n%s%s", code, out, errOut)
	}
}

func TestHealthText(t *testing.T) {
	t.Parallel()
	for want, h := range map[string]executor.Health{
		"STARTING":   {Checker: executor.CheckerHTTP, State: executor.HealthStarting},
		"RUNNING":    {Checker: executor.CheckerHTTP, State: executor.HealthRunning, Checks: 3},
		"1 failure":  {Checker: executor.CheckerShell, State: executor.HealthRunning, Failures: 1},
		"2 failures": {Checker: executor.CheckerHTTP, State: executor.HealthStarting, Failures: 2},
		"FAILED":     {Checker: executor.CheckerHTTP, State: executor.HealthFailed, Failures: 3},
		"none":       {Checker: executor.CheckerNone, State: executor.HealthRunning},
		"off":        {Checker: executor.CheckerOff, State: executor.HealthRunning},
	} {
		if got := healthText(h); got != want {
			t.Errorf("%+v: %q, want %q", h, got, want)
		}
	}
}

func TestWithNixInit(t *testing.T) {
	t.Parallel()
	doc, err := aurora.ParseDocument([]byte(`{"name": "x", "role": "r", "cluster": "c", "environment": "devel", "task": {"processes": [
		{"name": "nix_init", "cmdline": "/nix/var/nix/profiles/default/bin/nix-init 'a=/nix/store/x'"},
		{"name": "bare", "cmdline": "/nix/var/nix/profiles/default/bin/nix-init"},
		{"name": "other", "cmdline": "/nix/var/nix/profiles/default/bin/nix-initx; echo /nix/var/nix/profiles/default/bin/nix-init"},
		{"name": "templated", "cmdline": "app --config=$(/nix/var/nix/profiles/default/bin/nix-init 'render' --out x)"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	orig := doc.Jobs[0]
	job, err := withNixInit(orig, "/opt/my tools/nix-init")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`'/opt/my tools/nix-init' 'a=/nix/store/x'`, `'/opt/my tools/nix-init'`,
		// Another program's name is left alone; nix-init as a word is
		// replaced wherever it is, as in a templated file's $(...).
		"/nix/var/nix/profiles/default/bin/nix-initx; echo '/opt/my tools/nix-init'",
		`app --config=$('/opt/my tools/nix-init' 'render' --out x)`}
	for i, p := range job.Task.Processes {
		if *p.Cmdline != want[i] {
			t.Errorf("%s: %q, want %q", *p.Name, *p.Cmdline, want[i])
		}
	}
	if c := *orig.Task.Processes[0].Cmdline; !strings.HasPrefix(c, defaultNixInit) {
		t.Errorf("the original job was changed: %q", c)
	}
}

// TestRunHelloWorld builds the example and runs it, its init process
// running a stand-in for nix-init.
func TestRunHelloWorld(t *testing.T) {
	testnix.Require(t)
	root := repoRoot(t)
	dir := t.TempDir()
	standIn := filepath.Join(dir, "nix-init")
	os.WriteFile(standIn, []byte("#!/bin/sh\necho \"stand-in nix-init $*\"\n"), 0o755)
	sandbox := filepath.Join(dir, "sandbox")
	code, out, errOut := runCLI(t, "run", filepath.Join(root, "examples", "hello_world"), "--nix-init", standIn, "--sandbox", sandbox)
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"nix_init run 0: SUCCESS", "hello_world run 0: SUCCESS", "devcluster/www-data/devel/hello_world"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	initOut, _ := os.ReadFile(filepath.Join(sandbox, ".logs", "nix_init", "0", "stdout"))
	if !strings.HasPrefix(string(initOut), "stand-in nix-init hello_world=/nix/store/") {
		t.Errorf("nix_init's stdout: %q", initOut)
	}
	helloOut, _ := os.ReadFile(filepath.Join(sandbox, ".logs", "hello_world", "0", "stdout"))
	if !strings.Contains(string(helloOut), "hello world from nix-aurora (instance 0)") ||
		!strings.Contains(string(helloOut), "This greeting was read from its own store path.") {
		t.Errorf("hello_world's stdout: %q", helloOut)
	}

	// Without --nix-init, the job's own nix-init runs; where there is none,
	// the task fails and says what to do.
	if _, err := os.Stat(defaultNixInit); err == nil {
		return
	}
	noLocalNixInit(t)
	code, out, errOut = runCLI(t, "run", filepath.Join(root, "examples", "hello_world"), "--sandbox", filepath.Join(dir, "sandbox2"))
	if code != exitFailure || !strings.Contains(errOut, "process nix_init failed (exit 127)") || !strings.Contains(errOut, "--nix-init") {
		t.Errorf("without nix-init: exit %d\n%s%s", code, out, errOut)
	}
}

// syncBuffer is a bytes.Buffer that the test reads while run writes it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestRunWebService builds examples/web_service and runs it with its health
// check on, as the executor would on a cluster: the server answers its
// /health, the task becomes RUNNING, and Ctrl-C stops it through the HTTP
// lifecycle (the server quits on /quitquitquit), then the final process
// runs.
func TestRunWebService(t *testing.T) {
	testnix.Require(t)
	root := repoRoot(t)
	dir := t.TempDir()
	standIn := filepath.Join(dir, "nix-init")
	os.WriteFile(standIn, []byte("#!/bin/sh\necho \"stand-in nix-init $*\"\n"), 0o755)
	sandbox := filepath.Join(dir, "sandbox")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, &env{stdout: &stdout, stderr: &stderr},
			[]string{"run", filepath.Join(root, "examples", "web_service"), "--nix-init", standIn, "--sandbox", sandbox})
	}()
	// The first check comes before the server listens and is forgiven (the
	// initial interval); the next, interval_secs later, passes.
	healthy := false
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if strings.Contains(stdout.String(), "health: RUNNING after") {
			healthy = true
			break
		}
		select {
		case code := <-done:
			t.Fatalf("run ended (exit %d) before the task was healthy\n%s%s", code, stdout.String(), stderr.String())
		default:
		}
	}
	if !healthy {
		cancel()
		<-done
		t.Fatalf("not healthy within 60 s\n%s%s", stdout.String(), stderr.String())
	}
	cancel() // Ctrl-C
	var code int
	select {
	case code = <-done:
	case <-time.After(90 * time.Second):
		t.Fatalf("run did not end after the kill\n%s%s", stdout.String(), stderr.String())
	}
	out := stdout.String()
	if code != exitFailure || !strings.Contains(out, "task KILLED") && !strings.Contains(stderr.String(), "task KILLED") {
		t.Errorf("exit %d, want 1 and a KILLED task\n%s%s", code, out, stderr.String())
	}
	for _, want := range []string{"kill: POST /quitquitquit answered", "server run 0: SUCCESS", "cleanup run 0: SUCCESS"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// Counts in messages agree with their nouns: 1 failed run, 2 failed runs.
func TestRunPluralMessages(t *testing.T) {
	v := newStatusView(io.Discard, "c/r/devel/a", 0)
	s := thermos.ProcessStatus{Process: "p", State: thermos.ProcessWaiting, Run: 1}
	for n, want := range map[int]string{1: "(1 failed run)", 2: "(2 failed runs)"} {
		v.failures["p"] = n
		if l := v.line(s); !strings.Contains(l, want) {
			t.Errorf("%d failures: %q lacks %q", n, l, want)
		}
	}
	if code, _, errOut := runCLI(t, "diff", "old.json"); code != exitUsage || !strings.Contains(errOut, "got 1 argument\n") {
		t.Errorf("diff with one argument: exit %d\n%s", code, errOut)
	}
}

// noLocalNixInit plays a machine with no nix-init beside nixaurora or on PATH.
func noLocalNixInit(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	setLocalNixInit(t, filepath.Join(dir, "nixaurora"), "")
}

// setLocalNixInit makes exe nixaurora's path and onPath the nix-init found
// on PATH ("" for none), until the test ends.
func setLocalNixInit(t *testing.T, exe, onPath string) {
	t.Helper()
	oldExe, oldLook := executable, lookPath
	t.Cleanup(func() { executable, lookPath = oldExe, oldLook })
	executable = func() (string, error) { return exe, nil }
	lookPath = func(string) (string, error) {
		if onPath == "" {
			return "", exec.ErrNotFound
		}
		return onPath, nil
	}
}

// Where the profile has no nix-init, run uses the one beside nixaurora, then
// the one on PATH, and says which; with none, the hint names --nix-init.
func TestRunLocalNixInit(t *testing.T) {
	old := profileNixInit
	t.Cleanup(func() { profileNixInit = old })
	dir := t.TempDir()
	profileNixInit = filepath.Join(dir, "profile", "bin", "nix-init") // missing
	job := filepath.Join(dir, "job.json")
	os.WriteFile(job, []byte(`{"name": "a", "role": "r", "cluster": "c", "environment": "devel",
		"task": {"processes": [{"name": "init", "cmdline": "`+defaultNixInit+` root=/nix/store/x"}],
		         "resources": {"cpu": 1, "ram": 1048576, "disk": 1048576}}}`), 0o644)
	standIn := func(where string) string {
		p := filepath.Join(dir, where, "nix-init")
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("#!/bin/sh\necho \"nix-init "+where+" $*\"\n"), 0o755)
		return p
	}
	beside, onPath := standIn("bin"), standIn("path")

	cases := []struct {
		name, exe, onPath string
		code              int
		uses, stdout      string
	}{
		{"beside", filepath.Join(dir, "bin", "nixaurora"), onPath, exitOK, beside + " (installed beside nixaurora)", "nix-init bin root=/nix/store/x\n"},
		{"path", filepath.Join(dir, "nothing", "nixaurora"), onPath, exitOK, onPath + " (from PATH)", "nix-init path root=/nix/store/x\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			setLocalNixInit(t, c.exe, c.onPath)
			sandbox := filepath.Join(dir, "sandbox-"+c.name)
			code, out, errOut := runCLI(t, "run", job, "--sandbox", sandbox)
			want := "nixaurora run: " + profileNixInit + " is not installed here; using " + c.uses + "\n"
			if code != c.code || !strings.Contains(errOut, want) {
				t.Fatalf("exit %d, stderr lacks %q:\n%s%s", code, want, out, errOut)
			}
			if got, _ := os.ReadFile(filepath.Join(sandbox, ".logs", "init", "0", "stdout")); string(got) != c.stdout {
				t.Errorf("init's stdout %q, want %q", got, c.stdout)
			}
		})
	}
	t.Run("none", func(t *testing.T) {
		if _, err := os.Stat(defaultNixInit); err == nil {
			t.Skip(defaultNixInit + " is installed here")
		}
		noLocalNixInit(t)
		code, out, errOut := runCLI(t, "run", job, "--sandbox", filepath.Join(dir, "sandbox-none"))
		if code != exitFailure || strings.Contains(errOut, "using") || !strings.Contains(errOut, "pass --nix-init PATH") {
			t.Errorf("exit %d\n%s%s", code, out, errOut)
		}
	})
	t.Run("flag", func(t *testing.T) {
		setLocalNixInit(t, filepath.Join(dir, "bin", "nixaurora"), onPath)
		sandbox := filepath.Join(dir, "sandbox-flag")
		code, out, errOut := runCLI(t, "run", job, "--nix-init", onPath, "--sandbox", sandbox)
		if code != exitOK || strings.Contains(errOut, "not installed here") {
			t.Errorf("--nix-init: exit %d\n%s%s", code, out, errOut)
		}
		if got, _ := os.ReadFile(filepath.Join(sandbox, ".logs", "init", "0", "stdout")); !strings.HasPrefix(string(got), "nix-init path") {
			t.Errorf("--nix-init: init's stdout %q", got)
		}
	})
}
