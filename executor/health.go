package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unicode"
)

// HealthState is the task's health as the executor's status checkers see it.
type HealthState int

const (
	// HealthStarting: the task has not passed min_consecutive_successes
	// checks yet (Aurora's TASK_STARTING).
	HealthStarting HealthState = iota
	// HealthRunning: the task passed its checks, or has no checker (Aurora
	// sends TASK_RUNNING).
	HealthRunning
	// HealthFailed: the task failed its health check; the executor kills it.
	HealthFailed
)

var healthStateNames = [...]string{"STARTING", "RUNNING", "FAILED"}

func (s HealthState) String() string {
	if s >= 0 && int(s) < len(healthStateNames) {
		return healthStateNames[s]
	}
	return fmt.Sprintf("HealthState(%d)", int(s))
}

// Checker kinds, as Health.Checker names them.
const (
	CheckerHTTP  = "http"
	CheckerShell = "shell"
	CheckerNone  = "none" // no health port and no shell checker: Aurora's no-op checker
	CheckerOff   = "off"  // Options.NoHealthChecks
)

// Health is the task's health after a check, or when the checker starts.
type Health struct {
	Checker string
	State   HealthState
	// Checks counts the checks made; Failures the consecutive failures
	// counted against max_consecutive_failures (forgiven ones are not).
	Checks   int
	Failures int64
	// Passed tells whether the last check passed; Forgiven that its failure
	// fell in the initial interval; Snoozed that .healthchecksnooze
	// suspended it.
	Passed, Forgiven, Snoozed bool
	// Reason is why the last check failed, or (FAILED) why the task failed.
	Reason string
}

// snoozeFile in the sandbox suspends the health checks while it exists
// (ThreadedHealthChecker); a suspended check counts as passed.
const snoozeFile = ".healthchecksnooze"

// check is one health check: whether it passed, and why not.
type check func(ctx context.Context) (bool, string)

// tracker counts checks as ThreadedHealthChecker does.
type tracker struct {
	forgiven, maxAttempts   int64 // maxAttempts: attempts allowed before RUNNING
	maxFailures, minSuccess int64
	attempts                int64
	failures, successes     int64
	running, failed         bool
	reason                  string
}

func newTracker(c *config) *tracker {
	t := &tracker{forgiven: c.forgivenAttempts(), maxFailures: c.maxFailures, minSuccess: c.minSuccesses}
	// Aurora allows the forgiven attempts, max_consecutive_failures more
	// and min_consecutive_successes to reach RUNNING.
	t.maxAttempts = t.forgiven + t.maxFailures + t.minSuccess
	return t
}

// round makes one check (ThreadedHealthChecker._do_health_check) unless the
// task ran out of attempts to prove its health.
func (t *tracker) round(ctx context.Context, do check, h *Health) {
	if !t.running && t.attempts > t.maxAttempts {
		t.failed, t.reason = true, "Not enough successful health checks in time."
		h.Reason = t.reason
		return
	}
	ok, reason := do(ctx)
	h.Checks++
	if t.attempts <= t.maxAttempts {
		t.attempts++
	}
	h.Passed, h.Forgiven, h.Reason = ok, false, reason
	if ok {
		t.successes++
		if !t.running && t.successes >= t.minSuccess {
			t.running = true
		}
		t.failures = 0
		return
	}
	t.successes = 0
	if t.attempts <= t.forgiven {
		h.Forgiven = true
		return
	}
	// Fail fast: the successes still needed no longer fit in the attempts left.
	if !t.running {
		left, needed := t.maxAttempts-t.attempts, t.minSuccess-t.successes
		if left > 1 && needed > left {
			t.failed, t.reason = true, reason
		}
	}
	t.failures++
	if t.failures > t.maxFailures {
		t.failed, t.reason = true, reason
	}
}

func (t *tracker) state() HealthState {
	switch {
	case t.failed:
		return HealthFailed
	case t.running:
		return HealthRunning
	}
	return HealthStarting
}

// snoozable wraps a check with the snooze file.
func snoozable(sandbox string, do check, snoozed *bool) check {
	return func(ctx context.Context) (bool, string) {
		if _, err := os.Stat(filepath.Join(sandbox, snoozeFile)); err == nil {
			*snoozed = true
			return true, ""
		}
		*snoozed = false
		return do(ctx)
	}
}

// httpTimeout is HttpSignaler.TIMEOUT_SECS, the lifecycle requests' timeout.
const httpTimeout = time.Second

// httpSignal requests http://127.0.0.1:PORT/ENDPOINT as HttpSignaler does
// (GET, or POST with an empty body) and checks the answer against
// expected (when not empty) and code (when not 0). The body is compared
// stripped and lower-cased; an HTTP error status has no body, as urllib2
// raises HTTPError for it.
func httpSignal(ctx context.Context, port int, endpoint string, post bool, expected string, code int64, timeout time.Duration) (bool, string) {
	url := fmt.Sprintf("http://127.0.0.1:%d%s", port, endpoint)
	body, status, err := query(ctx, url, post, timeout)
	if err != nil {
		return false, fmt.Sprintf("Failed to signal %s: %s", url, err)
	}
	body = strings.ToLower(strings.TrimFunc(body, isPySpace))
	if expected != "" && body != strings.ToLower(expected) {
		return false, fmt.Sprintf("Response differs from expected response (expected %q, got %q)", shorten(expected), shorten(body))
	}
	if code != 0 && int64(status) != code {
		return false, fmt.Sprintf("Response code differs from expected response (expected %d, got %d)", code, status)
	}
	return true, ""
}

// isPySpace is Python 2's str.strip() set.
func isPySpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f'
}

// shorten is HttpSignaler's: strings of 10 characters or more are cut to 7
// and "...".
func shorten(s string) string {
	if len(s) < 10 {
		return s
	}
	return s[:7] + "..."
}

// maxBody bounds what a check reads of an answer.
const maxBody = 1 << 20

func query(ctx context.Context, url string, post bool, timeout time.Duration) (string, int, error) {
	if timeout <= 0 {
		return "", 0, errors.New("Error within timeout")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	method := http.MethodGet
	var data io.Reader
	if post {
		method, data = http.MethodPost, strings.NewReader("")
	}
	req, err := http.NewRequestWithContext(ctx, method, url, data)
	if err != nil {
		return "", 0, fmt.Errorf("Unexpected error: %w", err)
	}
	if post {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded") // what urllib2 sends with data
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return "", 0, queryError(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return "", resp.StatusCode, nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return "", 0, queryError(ctx, err)
	}
	return string(b), resp.StatusCode, nil
}

// queryError words a failed request as HttpSignaler does: a timeout is
// "Error within timeout", a refused connection urllib2's URLError.
func queryError(ctx context.Context, err error) error {
	if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
		return errors.New("Error within timeout")
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return fmt.Errorf("<urlopen error [Errno %d] %s>", int(errno), capitalize(errno.Error()))
	}
	var nerr net.Error
	if errors.As(err, &nerr) {
		return fmt.Errorf("<urlopen error %w>", err)
	}
	return errors.New("Error within HTTPException")
}

func capitalize(s string) string {
	for i, r := range s {
		return string(unicode.ToUpper(r)) + s[i+len(string(r)):]
	}
	return s
}

// shellCheck runs command as ShellHealthCheck does: /bin/bash -c, stdout
// and stderr together, killed after timeout. It runs where the executor
// runs on a node, in the Mesos sandbox that holds Thermos' sandbox (dir),
// with the executor's environment. On timeout it kills the command's whole
// process group, not only bash as Python's subprocess does, so that what it
// started does not outlive it.
func shellCheck(ctx context.Context, command, dir string, timeout time.Duration) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/bash", "-c", command)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return true, ""
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return false, "Health check timed out."
	case errors.As(err, &exit):
		code := exit.ExitCode()
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = -int(ws.Signal()) // Python's returncode
		}
		return false, fmt.Sprintf("Command '%s' returned non-zero exit status %d with output '%s'", command, code, out.String())
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return false, "OSError: " + capitalize(errno.Error())
	}
	return false, "OSError: " + err.Error()
}
