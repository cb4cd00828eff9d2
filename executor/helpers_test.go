package executor

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/aurora"
	"github.com/nix-aurora/nix-aurora/thermos"
)

// TestMain lets the test binary stand in for a task's server: a process
// that listens on its health port (see lifecycleServer).
func TestMain(m *testing.M) {
	if len(os.Args) == 4 && os.Args[1] == "lifecycle-server" {
		lifecycleServer(os.Args[2], os.Args[3])
		return
	}
	os.Exit(m.Run())
}

// lifecycleServer serves /health ("ok") and records, in the file calls of
// its working directory (the sandbox), each lifecycle request and the
// SIGTERM that ends it, with the time. mode "quit" exits 0 after
// /quitquitquit; "stay" ignores the lifecycle requests.
func lifecycleServer(port, mode string) {
	calls, err := os.OpenFile("calls", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		os.Exit(2)
	}
	var mu sync.Mutex
	record := func(what string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(calls, "%d %s\n", time.Now().UnixNano(), what)
	}
	terms := make(chan os.Signal, 1)
	signal.Notify(terms, syscall.SIGTERM)
	go func() {
		<-terms
		record("TERM")
		os.Exit(0)
	}()
	l, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		os.Exit(2)
	}
	quit := make(chan struct{})
	go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			fmt.Fprintln(w, "ok")
			return
		}
		record(r.Method + " " + r.URL.Path)
		fmt.Fprintln(w, "bye")
		if mode == "quit" && r.URL.Path == "/quitquitquit" {
			w.(http.Flusher).Flush()
			close(quit)
		}
	}))
	<-quit
}

// call is one line of a lifecycle server's calls file.
type call struct {
	at   time.Time
	what string
}

func readCalls(t *testing.T, sandbox string) []call {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(sandbox, "calls"))
	if err != nil {
		t.Fatal(err)
	}
	var out []call
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var ns int64
		var what string
		if _, err := fmt.Sscanf(line, "%d", &ns); err != nil {
			t.Fatalf("calls: %q", line)
		}
		_, what, _ = strings.Cut(line, " ")
		out = append(out, call{time.Unix(0, ns), what})
	}
	return out
}

// serverCmdline runs the test binary as a lifecycle server on the task's
// health port.
func serverCmdline(t *testing.T, mode string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("exec '%s' lifecycle-server {{thermos.ports[health]}} %s", exe, mode)
}

// testJob is a job whose task runs processes (JSON), with more attributes
// of the job in extra (JSON members, or "").
func testJob(t *testing.T, processes, extra string) aurora.Job {
	t.Helper()
	if extra != "" {
		extra = ", " + extra
	}
	doc, err := aurora.ParseDocument([]byte(`{"name": "svc", "role": "www-data", "cluster": "devcluster", "environment": "devel",
		"task": {"finalization_wait": 5, "resources": {"cpu": 0.1, "ram": 16777216, "disk": 16777216}, "processes": ` + processes + `}` + extra + `}`))
	if err != nil {
		t.Fatal(err)
	}
	return doc.Jobs[0]
}

// fast is a health_check_config with small intervals: the first failure
// is forgiven (ceil(0.2/0.2) = 1).
func fast(more string) string {
	return `"health_check_config": {"initial_interval_secs": 0.2, "interval_secs": 0.2, "timeout_secs": 0.5` + more + `}`
}

// staticHealth maps the health port to srv's port in the announcer's
// portmap, as a job with a static port would, and turns the lifecycle's
// waits off so that a kill is quick.
func staticHealth(srv *httptest.Server) string {
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	return fmt.Sprintf(`"announce": {"portmap": {"health": "%d"}}, "lifecycle": {"http": {"graceful_shutdown_wait_secs": 0, "shutdown_wait_secs": 0}}`, port)
}

// recorder is an Observer that keeps what it is told.
type recorder struct {
	mu     sync.Mutex
	tasks  []thermos.TaskState
	health []Health
	kills  []KillStep
	notify chan struct{}
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 1)} }

func (r *recorder) poke() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *recorder) TaskChanged(s thermos.TaskStatus) {
	r.mu.Lock()
	r.tasks = append(r.tasks, s.State)
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) ProcessChanged(thermos.ProcessStatus) {}

func (r *recorder) HealthChanged(h Health) {
	r.mu.Lock()
	r.health = append(r.health, h)
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) Killing(k KillStep) {
	r.mu.Lock()
	r.kills = append(r.kills, k)
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) healths() []Health {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Health(nil), r.health...)
}

// waitHealth waits (at most 10 s) until the health reaches state.
func (r *recorder) waitHealth(t *testing.T, state HealthState) Health {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if hs := r.healths(); len(hs) > 0 && hs[len(hs)-1].State == state {
			return hs[len(hs)-1]
		}
		select {
		case <-r.notify:
		case <-deadline:
			t.Fatalf("health never %s: %+v", state, r.healths())
		}
	}
}

// start runs the job in the background; wait returns its outcome.
func start(t *testing.T, ctx context.Context, job aurora.Job, opts Options) (wait func() (*Result, error)) {
	t.Helper()
	if opts.Sandbox == "" {
		opts.Sandbox = filepath.Join(t.TempDir(), "sandbox")
	}
	type outcome struct {
		res *Result
		err error
	}
	ch := make(chan outcome, 1)
	go func() {
		res, err := Run(ctx, job, opts)
		ch <- outcome{res, err}
	}()
	return func() (*Result, error) {
		t.Helper()
		select {
		case o := <-ch:
			return o.res, o.err
		case <-time.After(30 * time.Second):
			t.Fatal("the task did not end within 30s")
			return nil, nil
		}
	}
}
