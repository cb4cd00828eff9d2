package nix_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/internal/testnix"
)

// runnableJob is what TestExamplesHealthy reads of a job's JSON.
type runnableJob struct {
	Announce *struct {
		Portmap map[string]string `json:"portmap"`
	} `json:"announce"`
	HealthCheckConfig healthCheckConfig `json:"health_check_config"`
	Lifecycle         *struct {
		HTTP *struct {
			Port                     string  `json:"port"`
			GracefulShutdownEndpoint string  `json:"graceful_shutdown_endpoint"`
			GracefulShutdownWaitSecs float64 `json:"graceful_shutdown_wait_secs"`
			ShutdownEndpoint         string  `json:"shutdown_endpoint"`
			ShutdownWaitSecs         float64 `json:"shutdown_wait_secs"`
		} `json:"http"`
	} `json:"lifecycle"`
	Task struct {
		Processes   []process `json:"processes"`
		Constraints []struct {
			Order []string `json:"order"`
		} `json:"constraints"`
	} `json:"task"`
}

// healthCheckConfig is a job's health_check_config.
type healthCheckConfig struct {
	HealthChecker struct {
		HTTP *struct {
			Endpoint             string `json:"endpoint"`
			ExpectedResponse     string `json:"expected_response"`
			ExpectedResponseCode int    `json:"expected_response_code"`
		} `json:"http"`
		Shell *struct {
			ShellCommand string `json:"shell_command"`
		} `json:"shell"`
	} `json:"health_checker"`
	InitialIntervalSecs     float64 `json:"initial_interval_secs"`
	IntervalSecs            float64 `json:"interval_secs"`
	TimeoutSecs             float64 `json:"timeout_secs"`
	MaxConsecutiveFailures  int     `json:"max_consecutive_failures"`
	MinConsecutiveSuccesses int     `json:"min_consecutive_successes"`
}

// listenLocal turns, per example, the address its server listens on into
// 127.0.0.1, so that the test serves on loopback only. An example with a
// health port must have an entry, and its cmdlines must hold the text.
var listenLocal = map[string][2]string{
	"web_service": {"listen 0.0.0.0:", "listen 127.0.0.1:"},
	"prometheus":  {"--web.listen-address=:", "--web.listen-address=127.0.0.1:"},
}

// wantOutput is what an example without a health check must print while
// it runs, as a sign of life.
var wantOutput = map[string]string{
	"hello_world":        "hello world from nix-aurora (instance 0)",
	"python_hello_world": "Hello world from nix-aurora! (1/100",
	"cron_report":        "Sandbox report (nix-aurora cron_report example)",
}

var portBindingRE = regexp.MustCompile(`\{\{thermos\.ports\[([^\]]+)\]\}\}`)

// TestExamplesHealthy runs each example's processes from its built JSON, as
// Thermos would (`/bin/bash -c` in one sandbox, in their order, ports bound
// to free ports of 127.0.0.1), and checks the health check that the JSON
// gives Aurora's executor: an HTTP GET of the endpoint on the health port,
// with the expected body and status, or the shell command. A job without a
// health port and without a shell check gets the executor's no-op checker;
// its processes must then run (or end) successfully. Then it stops the job
// as the executor would: the HTTP kill lifecycle when the job has one on a
// port, which must stop the servers, or else SIGTERM; and runs the final
// processes.
func TestExamplesHealthy(t *testing.T) {
	testnix.Require(t)
	t.Parallel()

	nixInit := lazyNixInit(t)
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			t.Parallel()
			file, args := ex.nixArgs(t)
			doc, err := os.ReadFile(build(t, append([]string{file}, args...)...))
			if err != nil {
				t.Fatal(err)
			}
			var job runnableJob
			if err := json.Unmarshal(doc, &job); err != nil {
				t.Fatal(err)
			}
			runExample(t, ex.name, job, nixInit)
		})
	}
}

func runExample(t *testing.T, name string, job runnableJob, nixInit func(*testing.T) string) {
	var portmap map[string]string
	if job.Announce != nil {
		portmap = job.Announce.Portmap
	}
	var regular, final []process
	for _, p := range job.Task.Processes {
		switch {
		case p.Name == "nix_init" || p.Name == "nix_init_final":
		case p.Final:
			final = append(final, p)
		default:
			regular = append(regular, p)
		}
	}

	// Ports: those the cmdlines name, and the ones the health check and the
	// lifecycle use through the portmap, as Aurora's port resolver finds them.
	ports := map[string]int{}
	bindPort := func(name string) {
		if _, ok := ports[name]; !ok {
			ports[name] = freePort(t)
		}
	}
	for _, p := range job.Task.Processes {
		for _, m := range portBindingRE.FindAllStringSubmatch(p.Cmdline, -1) {
			bindPort(m[1])
		}
	}
	healthPort, hasHealthPort := resolvePort(t, portmap, ports, "health")
	if hasHealthPort {
		bindPort(healthPort)
	}
	health := job.HealthCheckConfig
	if health.HealthChecker.Shell == nil && hasHealthPort && health.HealthChecker.HTTP == nil {
		t.Fatal("a health port but no http health checker")
	}

	sandbox := t.TempDir()
	logs := t.TempDir()
	bind := func(s string) string {
		s = portBindingRE.ReplaceAllStringFunc(s, func(b string) string {
			return strconv.Itoa(ports[portBindingRE.FindStringSubmatch(b)[1]])
		})
		s = strings.NewReplacer(
			"{{mesos.instance}}", "0",
			"{{mesos.hostname}}", "localhost",
			"{{thermos.task_id}}", "www-data-devel-"+name+"-0-test",
		).Replace(s)
		if strings.Contains(s, "{{") {
			t.Fatalf("a binding the test does not know in %q", s)
		}
		return s
	}
	local, hasLocal := listenLocal[name]
	resolve := func(p process) string {
		cmdline := p.Cmdline
		if hasLocal {
			cmdline = strings.ReplaceAll(cmdline, local[0], local[1])
		}
		// A config rendered at run time (templateFile) calls nix-init.
		if strings.Contains(cmdline, defaultNixInit) {
			cmdline = strings.ReplaceAll(cmdline, defaultNixInit, nixInit(t))
		}
		return bind(cmdline)
	}
	if hasHealthPort {
		if !hasLocal {
			t.Fatalf("%s has a health port but no entry in listenLocal: the test would not know how to keep its server on 127.0.0.1", name)
		}
		found := false
		for _, p := range regular {
			found = found || strings.Contains(p.Cmdline, local[0])
		}
		if !found {
			t.Fatalf("no cmdline of %s holds %q: its server would not listen on 127.0.0.1", name, local[0])
		}
	}

	// Start the processes in their order: one that others follow must end
	// successfully first; the last of each chain keeps running.
	procs := inOrder(t, regular, job.Task.Constraints)
	followed := map[string]bool{}
	for _, c := range job.Task.Constraints {
		for _, n := range c.Order[:max(len(c.Order)-1, 0)] {
			followed[n] = true
		}
	}
	var running []*runningProcess
	for _, p := range procs {
		r := startProcess(t, sandbox, logs, p.Name, resolve(p))
		if followed[p.Name] {
			r.mustSucceed(t, 30*time.Second)
			continue
		}
		running = append(running, r)
	}
	alive := func() []*runningProcess {
		return slices.DeleteFunc(slices.Clone(running), (*runningProcess).exited)
	}

	switch {
	case health.HealthChecker.Shell != nil:
		command := bind(health.HealthChecker.Shell.ShellCommand)
		checkHealth(t, health.MinConsecutiveSuccesses, healthDeadline(health), alive, func() (bool, string) {
			return shellCheck(sandbox, command, secs(health.TimeoutSecs))
		})
	case hasHealthPort:
		h := health.HealthChecker.HTTP
		checkHealth(t, health.MinConsecutiveSuccesses, healthDeadline(health), alive, func() (bool, string) {
			return httpCheck(ports[healthPort], h.Endpoint, secs(health.TimeoutSecs), h.ExpectedResponse, h.ExpectedResponseCode, false)
		})
		t.Logf("GET %s on the health port (%s) passes", h.Endpoint, healthPort)
	default:
		t.Log("no health port and no shell check: the executor runs its no-op checker")
		if want, ok := wantOutput[name]; ok {
			waitOutput(t, running, want, 10*time.Second)
		}
		time.Sleep(time.Second)
		for _, r := range running {
			if r.exited() && r.err != nil {
				t.Fatalf("%s failed: %v\n%s", r.name, r.err, r.output())
			}
		}
	}
	if name == "web_service" {
		checkWebSite(t, ports[healthPort])
	}

	// Stop it as the executor would.
	stopped := false
	if lc := job.Lifecycle; lc != nil && lc.HTTP != nil {
		if port, ok := resolvePort(t, portmap, ports, lc.HTTP.Port); ok {
			for _, step := range []struct {
				endpoint string
				wait     float64
			}{{lc.HTTP.GracefulShutdownEndpoint, lc.HTTP.GracefulShutdownWaitSecs}, {lc.HTTP.ShutdownEndpoint, lc.HTTP.ShutdownWaitSecs}} {
				handled, reason := httpCheck(ports[port], step.endpoint, 5*time.Second, "", 0, true)
				t.Logf("POST %s: handled %v %s", step.endpoint, handled, reason)
				if handled && waitExited(alive, secs(step.wait)+2*time.Second) {
					stopped = true
					break
				}
			}
			if !stopped {
				t.Errorf("the kill lifecycle on port %s did not stop %v", lc.HTTP.Port, names(alive()))
			}
		}
	}
	if !stopped {
		// The runner's kill: SIGTERM to each process's top pid.
		for _, r := range alive() {
			r.cmd.Process.Signal(syscall.SIGTERM)
		}
		if !waitExited(alive, 10*time.Second) {
			t.Fatalf("SIGTERM did not stop %v", names(alive()))
		}
	}
	for _, r := range running {
		if r.err != nil && !stoppedBySIGTERM(r.err) {
			t.Errorf("%s ended with %v\n%s", r.name, r.err, r.output())
		}
	}
	for _, p := range final {
		startProcess(t, sandbox, logs, p.Name, resolve(p)).mustSucceed(t, 30*time.Second)
	}
}

// resolvePort follows the portmap from name to the name of a port that the
// task binds, as Aurora's port resolver does; ok is false if name is no
// port of the task.
func resolvePort(t *testing.T, portmap map[string]string, ports map[string]int, name string) (port string, ok bool) {
	t.Helper()
	for range len(portmap) + 1 {
		target, mapped := portmap[name]
		if !mapped {
			_, bound := ports[name]
			return name, bound
		}
		if _, err := strconv.Atoi(target); err == nil {
			t.Fatalf("port %s is the fixed port %s: the test cannot bind it", name, target)
		}
		if _, bound := ports[target]; !bound && portmap[target] == "" {
			// An alias of a port no cmdline names: Aurora still assigns it.
			ports[target] = freePort(t)
		}
		name = target
	}
	t.Fatalf("the portmap %v has a cycle", portmap)
	return "", false
}

// freePort returns a port of 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// inOrder sorts processes so that each comes after those the order
// constraints put before it (the init processes' constraints aside).
func inOrder(t *testing.T, procs []process, constraints []struct {
	Order []string `json:"order"`
}) []process {
	t.Helper()
	before := map[string][]string{}
	for _, c := range constraints {
		for i := 1; i < len(c.Order); i++ {
			before[c.Order[i]] = append(before[c.Order[i]], c.Order[i-1])
		}
	}
	done := map[string]bool{"nix_init": true, "nix_init_final": true}
	var out []process
	for len(out) < len(procs) {
		progress := false
		for _, p := range procs {
			if done[p.Name] || !allDone(before[p.Name], done) {
				continue
			}
			out = append(out, p)
			done[p.Name] = true
			progress = true
		}
		if !progress {
			t.Fatalf("the order constraints %v have a cycle", constraints)
		}
	}
	return out
}

func allDone(names []string, done map[string]bool) bool {
	for _, n := range names {
		if !done[n] {
			return false
		}
	}
	return true
}

// runningProcess is a process started with `/bin/bash -c`, in its own
// process group, its output in a log file.
type runningProcess struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startProcess(t *testing.T, sandbox, logs, name, cmdline string) *runningProcess {
	t.Helper()
	r := &runningProcess{name: name, log: filepath.Join(logs, name+".log"), done: make(chan struct{})}
	out, err := os.Create(r.log)
	if err != nil {
		t.Fatal(err)
	}
	r.cmd = exec.Command("/bin/bash", "-c", cmdline)
	r.cmd.Dir = sandbox
	r.cmd.Env = []string{"HOME=" + sandbox, "PATH=/usr/bin:/bin"}
	r.cmd.Stdout = out
	r.cmd.Stderr = out
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		r.err = r.cmd.Wait()
		out.Close()
		close(r.done)
	}()
	t.Cleanup(func() {
		// The whole group: a server's children too.
		syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s did not end after SIGKILL", name)
		}
	})
	return r
}

func (r *runningProcess) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func (r *runningProcess) output() string {
	b, _ := os.ReadFile(r.log)
	return string(b)
}

func (r *runningProcess) mustSucceed(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(timeout):
		t.Fatalf("%s still runs after %v\n%s", r.name, timeout, r.output())
	}
	if r.err != nil {
		t.Fatalf("%s: %v\n%s", r.name, r.err, r.output())
	}
}

func names(rs []*runningProcess) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.name)
	}
	return out
}

// waitExited waits up to timeout for every process alive returns to end.
func waitExited(alive func() []*runningProcess, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for len(alive()) > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

func stoppedBySIGTERM(err error) bool {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return false
	}
	status, ok := exit.Sys().(syscall.WaitStatus)
	return ok && status.Signaled() && status.Signal() == syscall.SIGTERM
}

func waitOutput(t *testing.T, rs []*runningProcess, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, r := range rs {
			if strings.Contains(r.output(), want) {
				return
			}
		}
		if time.Now().After(deadline) {
			var all strings.Builder
			for _, r := range rs {
				fmt.Fprintf(&all, "%s:\n%s\n", r.name, r.output())
			}
			t.Fatalf("no process printed %q within %v\n%s", want, timeout, all.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// healthDeadline is how long the executor lets a task become healthy: its
// initial interval, then as many failed checks as it tolerates; at most a
// minute here.
func healthDeadline(h healthCheckConfig) time.Duration {
	d := secs(h.InitialIntervalSecs + float64(h.MaxConsecutiveFailures+1)*h.IntervalSecs)
	return min(d, time.Minute)
}

// checkHealth runs check until it passes want (at least 1) times in a row,
// failing if the deadline passes first or the processes end. Checks are
// 200 ms apart, not the job's interval.
func checkHealth(t *testing.T, want int, deadline time.Duration, alive func() []*runningProcess, check func() (bool, string)) {
	t.Helper()
	end := time.Now().Add(deadline)
	successes := 0
	var reason string
	for successes < max(want, 1) {
		if len(alive()) == 0 {
			t.Fatalf("the processes ended before the health check passed (last: %s)", reason)
		}
		if time.Now().After(end) {
			t.Fatalf("the health check did not pass within %v: %s", deadline, reason)
		}
		var ok bool
		if ok, reason = check(); ok {
			successes++
		} else {
			successes = 0
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// httpCheck asks the endpoint as Aurora's HttpSignaler does: a GET (or a
// POST with an empty body), where an error status reads as an empty body;
// the body must be the expected one (ignoring case and surrounding space)
// unless that is empty, and the status the expected one unless that is 0.
func httpCheck(port int, endpoint string, timeout time.Duration, expected string, code int, post bool) (bool, string) {
	client := &http.Client{Timeout: timeout}
	url := fmt.Sprintf("http://127.0.0.1:%d%s", port, endpoint)
	var resp *http.Response
	var err error
	if post {
		resp, err = client.Post(url, "application/x-www-form-urlencoded", strings.NewReader(""))
	} else {
		resp, err = client.Get(url)
	}
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return false, err.Error()
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		body = nil
	}
	got := strings.ToLower(strings.TrimSpace(string(body)))
	if expected != "" && got != strings.ToLower(expected) {
		return false, fmt.Sprintf("%s answered %d %q, want %q", url, resp.StatusCode, got, expected)
	}
	if code != 0 && resp.StatusCode != code {
		return false, fmt.Sprintf("%s answered %d, want %d", url, resp.StatusCode, code)
	}
	return true, ""
}

// shellCheck runs a shell health check as the executor does: `/bin/bash -c`,
// passing on exit status 0 within the timeout.
func shellCheck(dir, command string, timeout time.Duration) (bool, string) {
	cmd := exec.Command("/bin/bash", "-c", command)
	cmd.Dir = dir
	cmd.Env = []string{"HOME=" + dir, "PATH=/usr/bin:/bin"}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return false, err.Error()
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return false, fmt.Sprintf("%q: %v: %s", command, err, out.String())
		}
		return true, ""
	case <-time.After(max(timeout, time.Second)):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return false, fmt.Sprintf("%q timed out", command)
	}
}

// checkWebSite checks that web_service serves its site besides its health.
func checkWebSite(t *testing.T, port int) {
	t.Helper()
	for path, want := range map[string]int{"/": 200, "/index.html": 200, "/nothing-here": 404, "/../etc/passwd": 404} {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
		if want == 200 && string(body) != "<h1>served by nix-aurora</h1>\n" {
			t.Errorf("GET %s: %q, want the site's index.html", path, body)
		}
	}
}

// lazyNixInit returns a function that builds cmd/nix-init once, for the
// examples whose cmdlines render a config with it, and returns its path.
func lazyNixInit(t *testing.T) func(*testing.T) string {
	dir := t.TempDir()
	var once sync.Once
	var path string
	var err error
	return func(t *testing.T) string {
		t.Helper()
		once.Do(func() {
			goTool, lookErr := exec.LookPath("go")
			if lookErr != nil {
				err = fmt.Errorf("building cmd/nix-init needs the go command: %w", lookErr)
				return
			}
			path = filepath.Join(dir, "nix-init")
			cmd := exec.Command(goTool, "build", "-o", path, "./cmd/nix-init")
			cmd.Dir = repoRoot(t)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, buildErr := cmd.CombinedOutput(); buildErr != nil {
				err = fmt.Errorf("go build ./cmd/nix-init: %v\n%s", buildErr, out)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return path
	}
}

// TestTcpserveBytes checks that the store's tcpserve (web_service's server)
// has exactly the bytes of examples/web_service/tcpserve.hex, and, where GNU
// as and objcopy are installed, that those are tcpserve.s assembled.
func TestTcpserveBytes(t *testing.T) {
	testnix.Require(t)
	t.Parallel()

	text, err := os.ReadFile(filepath.Join(repoRoot(t), "examples", "web_service", "tcpserve.hex"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := hex.DecodeString(strings.Join(strings.Fields(string(text)), ""))
	if err != nil {
		t.Fatalf("tcpserve.hex: %v", err)
	}

	var roots map[string]string
	evalJSON(t, &roots, "examples/web_service", "-A", "roots")
	build(t, "examples/web_service")
	var program string
	for _, path := range strings.Fields(mustNix(t, "nix-store", "-qR", roots["server"])) {
		if strings.HasSuffix(path, "-tcpserve") {
			program = filepath.Join(path, "bin", "tcpserve")
		}
	}
	if program == "" {
		t.Fatal("no tcpserve in the closure of web_service's server")
	}
	got, err := os.ReadFile(program)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s (%d bytes) differs from tcpserve.hex (%d bytes)", program, len(got), len(want))
	}

	as, asErr := exec.LookPath("as")
	objcopy, objcopyErr := exec.LookPath("objcopy")
	if asErr != nil || objcopyErr != nil {
		t.Log("GNU as or objcopy is not installed: tcpserve.s is not assembled")
		return
	}
	dir := t.TempDir()
	obj, bin := filepath.Join(dir, "tcpserve.o"), filepath.Join(dir, "tcpserve")
	for _, args := range [][]string{
		{as, "--64", "-o", obj, filepath.Join(repoRoot(t), "examples", "web_service", "tcpserve.s")},
		{objcopy, "-O", "binary", "-j", ".text", obj, bin},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	assembled, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(assembled, want) {
		t.Errorf("tcpserve.s assembles to %d bytes that differ from tcpserve.hex (%d bytes): regenerate it as tcpserve.s says", len(assembled), len(want))
	}
}
