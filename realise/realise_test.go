package realise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/nix-aurora/nix-aurora/store"
)

// Messages as Nix 2.8's daemon sends them (ANSI escapes already removed by
// the store client), captured from the integration tests.
const (
	nix503Retry  = "warning: error: unable to download 'http://127.0.0.1:41989/nix-cache-info': HTTP error 503 ('Service Unavailable')\n\n       response body:\n\n       testnode: injected fault: 503 Service Unavailable; retrying in 291 ms"
	nix503Final  = "warning: unable to download 'http://127.0.0.1:41989/nix-cache-info': HTTP error 503 ('Service Unavailable')\n\n         response body:\n\n         testnode: injected fault: 503 Service Unavailable"
	nixDownRetry = "warning: error: unable to download 'http://127.0.0.1:39047/nix-cache-info': Couldn't connect to server (7); retrying in 317 ms"
	nixDownFinal = "warning: unable to download 'http://127.0.0.1:39047/nix-cache-info': Couldn't connect to server (7)"
	nixNar503    = "error: unable to download 'http://127.0.0.1:44039/nar/1llk.nar.zst': HTTP error 503 ('Service Unavailable')\n\n       response body:\n\n       testnode: injected fault: 503 Service Unavailable"
	nixNarDrop   = "error: unable to download 'http://127.0.0.1:35103/nar/1w0j.nar.zst': Failure when receiving data from the peer (56)"
	nixBadSig    = "warning: the substitute for '/nix/store/kpgvnx5w52d5f4q6psw6gyd60svnwak4-tn-probe' from 'http://127.0.0.1:42409' is not signed by any of the keys in 'trusted-public-keys'"
	nixUntrusted = "warning: ignoring untrusted substituter 'http://127.0.0.1:1234'"
	nixHashBad   = "error: hash mismatch importing path '/nix/store/kpgvnx5w52d5f4q6psw6gyd60svnwak4-tn-probe';\n  specified: sha256:1\n  got:       sha256:2"
	buildFailed  = "build of '/nix/store/kpgvnx5w52d5f4q6psw6gyd60svnwak4-tn-probe' failed"
	somePath     = "/nix/store/kpgvnx5w52d5f4q6psw6gyd60svnwak4-tn-probe"
)

// daemonErr is a daemon's error as a call returns it.
func daemonErr(op, msg string) error {
	return fmt.Errorf("store unix:///s: %s %s: %w", op, somePath, &store.DaemonError{Op: op, Path: somePath, Message: msg})
}

func TestTransient(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	missingSocket := &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.ENOENT)}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"cancelled", fmt.Errorf("x: %w", context.Canceled), false},
		{"call timed out", fmt.Errorf("x: %w", context.DeadlineExceeded), true},
		{"not found", &NotFoundError{Paths: []string{somePath}}, false},
		{"not found wrapped", fmt.Errorf("x: %w", &NotFoundError{Paths: []string{somePath}}), false},
		{"narinfo 503", daemonErr("QueryMissing", "unable to download 'http://c/x.narinfo': HTTP error 503 ('Service Unavailable')"), true},
		{"cache down", daemonErr("QueryMissing", "unable to download 'http://c/x.narinfo': Couldn't connect to server (7)"), true},
		{"429", daemonErr("BuildPaths", "unable to download 'http://c/x': HTTP error 429"), true},
		{"reset", daemonErr("BuildPaths", "unable to download 'http://c/x': Recv failure: Connection reset by peer (56)"), true},
		{"db locked", daemonErr("BuildPaths", "SQLite database '/nix/var/nix/db/db.sqlite' is busy: database is locked"), true},
		{"404", daemonErr("BuildPaths", "unable to download 'http://c/x': HTTP error 404"), false},
		{"403", daemonErr("BuildPaths", "unable to download 'http://c/x': HTTP error 403"), false},
		{"build failed", daemonErr("BuildPaths", buildFailed), false},
		{"bad signature", daemonErr("AddToStoreNar", "cannot add path '"+somePath+"' because it lacks a valid signature"), false},
		{"daemon hung up", fmt.Errorf("x: %w: %w", store.ErrBroken, io.ErrUnexpectedEOF), true},
		{"eof", fmt.Errorf("x: %w", io.EOF), true},
		{"refused", fmt.Errorf("connect: %w", refused), true},
		{"socket missing while restarting", fmt.Errorf("connect: %w", missingSocket), true},
		{"permission denied", fmt.Errorf("connect: %w", &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EACCES)}), false},
		{"other", errors.New("something"), false},
		{"diagnosed heal", &DiagnosedError{Err: &NotFoundError{}, Cause: "x", Heal: true}, true},
		{"diagnosed permanent", &DiagnosedError{Err: daemonErr("BuildPaths", buildFailed), Cause: "x"}, false},
		{"diagnosed wrapped", fmt.Errorf("x: %w", &DiagnosedError{Err: errors.New("y"), Heal: true}), true},
		{"diagnosed but cancelled", &DiagnosedError{Err: context.Canceled, Heal: true}, false},
	} {
		if got := Transient(tc.err); got != tc.want {
			t.Errorf("%s: Transient(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

func TestParseProblem(t *testing.T) {
	for _, tc := range []struct {
		line   string
		ok     bool
		want   problem
		logged string
	}{
		{line: "copying path '/nix/store/x' from 'http://c'...", ok: false},
		{line: "", ok: false},
		{line: oneLine(nix503Retry), ok: true,
			want:   problem{text: "unable to download 'http://127.0.0.1:41989/nix-cache-info': HTTP error 503 ('Service Unavailable')", transient: true, retry: "; retrying in 291 ms"},
			logged: "warning: unable to download 'http://127.0.0.1:41989/nix-cache-info': HTTP error 503 ('Service Unavailable'); retrying in 291 ms"},
		// Nix 2.34 ends its retry notices with the attempt count.
		{line: "warning: unable to download 'http://127.0.0.1:41989/nix-cache-info': Could not connect to server (7); retrying in 347 ms (attempt 1/5)", ok: true,
			want: problem{text: "unable to download 'http://127.0.0.1:41989/nix-cache-info': Could not connect to server (7)", transient: true, retry: "; retrying in 347 ms (attempt 1/5)"}},
		{line: oneLine(nix503Final), ok: true,
			want: problem{text: "unable to download 'http://127.0.0.1:41989/nix-cache-info': HTTP error 503 ('Service Unavailable')", final: true, transient: true}},
		{line: nixDownRetry, ok: true,
			want: problem{text: "unable to download 'http://127.0.0.1:39047/nix-cache-info': Couldn't connect to server (7)", transient: true, retry: "; retrying in 317 ms"}},
		{line: oneLine(nixNar503), ok: true,
			want:   problem{text: "unable to download 'http://127.0.0.1:44039/nar/1llk.nar.zst': HTTP error 503 ('Service Unavailable')", error: true, final: true, transient: true},
			logged: "error: unable to download 'http://127.0.0.1:44039/nar/1llk.nar.zst': HTTP error 503 ('Service Unavailable')"},
		{line: nixBadSig, ok: true,
			want: problem{text: strings.TrimPrefix(nixBadSig, "warning: "), final: true}},
		{line: oneLine(nixHashBad), ok: true,
			want: problem{text: "hash mismatch importing path '" + somePath + "'; specified: sha256:1 got: sha256:2", error: true, final: true}},
	} {
		got, ok := parseProblem(tc.line)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseProblem(%q) =\n  %+v, %v\nwant\n  %+v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
		if tc.logged != "" && got.String() != tc.logged {
			t.Errorf("problem logged as %q, want %q", got.String(), tc.logged)
		}
	}
	long := "error: " + strings.Repeat("é", 1000)
	if p, _ := parseProblem(long); len(p.text) > 404 || !strings.HasSuffix(p.text, "…") {
		t.Errorf("a long message is kept whole: %d bytes", len(p.text))
	}
}

func TestOneLine(t *testing.T) {
	got := oneLine(nix503Final)
	want := "warning: unable to download 'http://127.0.0.1:41989/nix-cache-info': HTTP error 503 ('Service Unavailable') response body: testnode: injected fault: 503 Service Unavailable"
	if got != want {
		t.Errorf("oneLine = %q", got)
	}
}

// feed gives a tracker the daemon's log lines.
func feed(tr *tracker, lines ...string) {
	for _, l := range lines {
		tr.event(store.Event{Kind: store.Log, Text: l})
	}
}

func TestDiagnose(t *testing.T) {
	notFound := &NotFoundError{Paths: []string{somePath}, Caches: []string{"http://127.0.0.1:39047"}}
	deadline := fmt.Errorf("query missing paths: %w", context.DeadlineExceeded)
	for _, tc := range []struct {
		name      string
		logs      []string
		err       error
		diagnosed bool
		transient bool
		cause     string // in the message
	}{
		{name: "not found, nothing logged", err: notFound},
		{name: "not found, a retry that healed", logs: []string{nix503Retry}, err: notFound},
		{name: "not found, cache unreachable", logs: []string{nixDownRetry, nixDownFinal}, err: notFound,
			diagnosed: true, transient: true, cause: "cannot tell whether a substituter has " + somePath + " (asked http://127.0.0.1:39047): unable to download 'http://127.0.0.1:39047/nix-cache-info': Couldn't connect to server (7)"},
		{name: "not found, cache 503", logs: []string{nix503Retry, nix503Final}, err: notFound, diagnosed: true, transient: true, cause: "HTTP error 503"},
		{name: "not found, untrusted substituter", logs: []string{nixUntrusted}, err: notFound, diagnosed: true, cause: "ignoring untrusted substituter"},
		{name: "build failed on a 503", logs: []string{nix503Retry, nixNar503}, err: daemonErr("BuildPaths", buildFailed),
			diagnosed: true, transient: true, cause: buildFailed + ": unable to download 'http://127.0.0.1:44039/nar/1llk.nar.zst': HTTP error 503 ('Service Unavailable')"},
		{name: "build failed on a reset", logs: []string{nixNarDrop}, err: daemonErr("BuildPaths", buildFailed), diagnosed: true, transient: true, cause: "Failure when receiving data"},
		{name: "build failed on a signature", logs: []string{nixBadSig}, err: daemonErr("BuildPaths", buildFailed),
			diagnosed: true, cause: buildFailed + ": the substitute for"},
		{name: "build failed on a signature and a 503", logs: []string{nixBadSig, nixNar503}, err: daemonErr("BuildPaths", buildFailed), diagnosed: true, transient: true, cause: "503"},
		{name: "build failed on a hash and a 503", logs: []string{nixNar503, nixHashBad}, err: daemonErr("BuildPaths", buildFailed), diagnosed: true, cause: "hash mismatch"},
		{name: "build failed, nothing logged", err: daemonErr("BuildPaths", buildFailed)},
		{name: "out of time while Nix retries", logs: []string{nixDownRetry}, err: deadline, diagnosed: true, transient: true, cause: "context deadline exceeded: unable to download 'http://127.0.0.1:39047/nix-cache-info': Couldn't connect to server (7)"},
		{name: "out of time, nothing logged", err: deadline, transient: true},
		{name: "transient error that says it all", logs: []string{nixDownFinal},
			err: daemonErr("QueryMissing", "unable to download 'http://127.0.0.1:39047/nix-cache-info': Couldn't connect to server (7)"), transient: true},
		{name: "cancelled", logs: []string{nixDownRetry}, err: fmt.Errorf("x: %w", context.Canceled)},
		{name: "permanent, unrelated", logs: []string{nixDownFinal}, err: errors.New("add gc root: permission denied")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracker(&Config{}, &Report{})
			feed(tr, tc.logs...)
			got := tr.diagnose(tc.err)
			var d *DiagnosedError
			if errors.As(got, &d) != tc.diagnosed {
				t.Fatalf("diagnose(%v) = %v (%T)", tc.err, got, got)
			}
			if !errors.Is(got, tc.err) {
				t.Errorf("the diagnosis does not wrap the error")
			}
			if Transient(got) != tc.transient {
				t.Errorf("Transient(%v) = %v", got, !tc.transient)
			}
			if !strings.Contains(got.Error(), tc.cause) {
				t.Errorf("message %q does not contain %q", got.Error(), tc.cause)
			}
			if tr.diagnose(got) != got {
				t.Errorf("diagnosed twice")
			}
		})
	}
}

func TestTrackerFetched(t *testing.T) {
	var mu sync.Mutex
	var logged []string
	cfg := &Config{Log: func(f string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		logged = append(logged, fmt.Sprintf(f, a...))
	}}
	rep := &Report{}
	tr := newTracker(cfg, rep)
	sess := &Session{Config: cfg, report: rep}
	tr.session = sess
	const other = "/nix/store/0yinxqzryhl7qyqpjawj7l43y7vaa9lv-other"
	sess.SetDownloadSizes(map[string]uint64{other: 4242})
	ev := func(e store.Event) { tr.event(e) }

	// Nix 2.8: Substitute > CopyPath > FileTransfer, progress on the transfer.
	ev(store.Event{Kind: store.StartActivity, ActivityID: 1, ActivityType: store.ActSubstitute, Fields: []any{somePath, "http://c"}})
	ev(store.Event{Kind: store.StartActivity, ActivityID: 2, ActivityType: store.ActCopyPath, Parent: 1, Fields: []any{somePath, "http://c", "local"}})
	ev(store.Event{Kind: store.StartActivity, ActivityID: 3, ActivityType: store.ActFileTransfer, Parent: 2, Fields: []any{"http://c/nar/x.nar.zst"}})
	ev(store.Event{Kind: store.Result, ActivityID: 3, ResultType: store.ResProgress, Fields: []any{uint64(100), uint64(1000), uint64(0), uint64(0)}})
	ev(store.Event{Kind: store.Result, ActivityID: 3, ResultType: store.ResProgress, Fields: []any{uint64(1000), uint64(1000), uint64(0), uint64(0)}})
	ev(store.Event{Kind: store.Result, ActivityID: 3, ResultType: store.ResBuildLogLine, Fields: []any{"x"}})
	ev(store.Event{Kind: store.StopActivity, ActivityID: 3})
	ev(store.Event{Kind: store.StopActivity, ActivityID: 2})
	ev(store.Event{Kind: store.StopActivity, ActivityID: 1})
	// A path whose size the planner knew.
	ev(store.Event{Kind: store.StartActivity, ActivityID: 4, ActivityType: store.ActCopyPath, Fields: []any{other, "http://d", "local"}})
	ev(store.Event{Kind: store.StopActivity, ActivityID: 4})
	// Unknown ids and odd fields are ignored.
	ev(store.Event{Kind: store.StopActivity, ActivityID: 99})
	ev(store.Event{Kind: store.Result, ActivityID: 99, ResultType: store.ResProgress, Fields: []any{"x"}})
	ev(store.Event{Kind: store.StartActivity, ActivityID: 5, ActivityType: store.ActCopyPath, Fields: []any{uint64(1)}})
	ev(store.Event{Kind: store.StopActivity, ActivityID: 5})
	// Daemon lines: only problems are logged, on one line.
	ev(store.Event{Kind: store.Log, Text: "copying path"})
	ev(store.Event{Kind: store.Log, Text: nix503Retry})

	if len(rep.Substituted) != 2 {
		t.Fatalf("substituted %+v", rep.Substituted)
	}
	if p := rep.Substituted[0]; p.Path != somePath || p.From != "http://c" || p.Bytes != 1000 {
		t.Errorf("first %+v", p)
	}
	if p := rep.Substituted[1]; p.Path != other || p.From != "http://d" || p.Bytes != 4242 {
		t.Errorf("second %+v", p)
	}
	if rep.DownloadBytes != 5242 {
		t.Errorf("download bytes %d", rep.DownloadBytes)
	}
	want := []string{
		"fetched " + somePath + " from http://c (1000 B, ",
		"fetched " + other + " from http://d (4.1 KiB, ",
		"nix: warning: unable to download 'http://127.0.0.1:41989/nix-cache-info': HTTP error 503 ('Service Unavailable'); retrying in 291 ms",
	}
	if len(logged) != len(want) {
		t.Fatalf("logged %q", logged)
	}
	for i, w := range want {
		if !strings.HasPrefix(logged[i], w) {
			t.Errorf("line %d = %q, want %q...", i, logged[i], w)
		}
	}
	if len(tr.activities) != 0 {
		t.Errorf("activities left: %v", tr.activities)
	}

	// Verbose: every daemon line, as it came (on one line).
	logged = nil
	cfg.Verbose = true
	ev(store.Event{Kind: store.Log, Text: "copying path"})
	ev(store.Event{Kind: store.Log, Text: nix503Final})
	if len(logged) != 2 || logged[0] != "nix: copying path" || !strings.Contains(logged[1], "response body: testnode") {
		t.Errorf("verbose logged %q", logged)
	}
}

func TestProblemsBounded(t *testing.T) {
	tr := newTracker(&Config{}, &Report{})
	for i := 0; i < 3*maxProblems; i++ {
		feed(tr, fmt.Sprintf("warning: number %d", i))
	}
	if len(tr.problems) != maxProblems || tr.problems[maxProblems-1].text != fmt.Sprintf("number %d", 3*maxProblems-1) {
		t.Errorf("%d problems kept, last %+v", len(tr.problems), tr.problems[len(tr.problems)-1])
	}
}

var roots = []Root{{Name: "app", Path: somePath}}

// fastBackOff retries every 10 ms.
func fastBackOff() backoff.BackOff { return backoff.NewConstantBackOff(10 * time.Millisecond) }

func TestRetriesUntilBudget(t *testing.T) {
	calls := 0
	refused := &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	var logged []string
	cfg := Config{
		Connect: func(ctx context.Context) (*store.Conn, error) {
			calls++
			return nil, fmt.Errorf("store unix:///s: connecting: %w", refused)
		},
		Timeout:    300 * time.Millisecond,
		NewBackOff: fastBackOff,
		Log:        func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) },
	}
	start := time.Now()
	rep, err := Realise(context.Background(), cfg, roots)
	elapsed := time.Since(start)
	if !errors.Is(err, ErrGaveUp) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("err = %v", err)
	}
	if !strings.HasPrefix(err.Error(), "gave up: still failing after 300ms and ") || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("message %q", err)
	}
	if elapsed < 300*time.Millisecond || elapsed > 2*time.Second {
		t.Errorf("gave up after %v", elapsed)
	}
	if calls < 5 || rep.Retries != calls-1 && rep.Retries != calls {
		t.Errorf("%d connects, %d retries reported", calls, rep.Retries)
	}
	if rep.Outcome != "gave-up" || rep.Error != err.Error() || len(rep.Roots) != 1 || rep.Substituted == nil {
		t.Errorf("report %+v", rep)
	}
	if len(logged) != rep.Retries || !strings.HasPrefix(logged[0], "transient failure, retrying in 10ms: connect to the store: ") {
		t.Errorf("logged %q", logged)
	}
}

func TestPermanentFailsAtOnce(t *testing.T) {
	calls := 0
	cfg := Config{
		Connect: func(ctx context.Context) (*store.Conn, error) {
			calls++
			return nil, errors.New("the daemon speaks protocol 1.10, older than 1.21")
		},
		Timeout:    10 * time.Second,
		NewBackOff: fastBackOff,
	}
	rep, err := Realise(context.Background(), cfg, roots)
	if err == nil || errors.Is(err, ErrGaveUp) || calls != 1 || rep.Retries != 0 || rep.Outcome != "failed" {
		t.Errorf("err %v, %d connects, report %+v", err, calls, rep)
	}
}

func TestInterruptedIsNotGaveUp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	cfg := Config{
		Connect: func(context.Context) (*store.Conn, error) {
			calls++
			if calls == 3 {
				cancel() // SIGTERM while retrying
			}
			return nil, fmt.Errorf("connecting: %w", io.EOF)
		},
		Timeout:    10 * time.Second,
		NewBackOff: fastBackOff,
	}
	rep, err := Realise(ctx, cfg, roots)
	if err == nil || errors.Is(err, ErrGaveUp) || !errors.Is(err, context.Canceled) || rep.Outcome != "failed" {
		t.Errorf("err %v, report outcome %q", err, rep.Outcome)
	}
	if !strings.Contains(err.Error(), "interrupted") || !strings.Contains(err.Error(), "EOF") {
		t.Errorf("message %q", err)
	}
}

func TestNoBudget(t *testing.T) {
	// Timeout 0: no budget; the retries go on until the caller stops them.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	cfg := Config{
		Connect:    func(context.Context) (*store.Conn, error) { return nil, io.ErrUnexpectedEOF },
		NewBackOff: fastBackOff,
	}
	rep, err := Realise(ctx, cfg, roots)
	if errors.Is(err, ErrGaveUp) || !errors.Is(err, io.ErrUnexpectedEOF) || rep.Retries < 3 {
		t.Errorf("err %v, %d retries", err, rep.Retries)
	}
}

func TestCheckRoots(t *testing.T) {
	const other = "/nix/store/0yinxqzryhl7qyqpjawj7l43y7vaa9lv-other"
	for _, tc := range []struct {
		roots []Root
		want  string
	}{
		{[]Root{{Name: "a", Path: "/nix/store/short-x"}}, "root a"},
		{[]Root{{Name: "", Path: somePath}}, "empty"},
		{[]Root{{Name: "a/b", Path: somePath}}, "contains '/'"},
		{[]Root{{Name: ".gc", Path: somePath}}, "starts with '.'"},
		{[]Root{{Name: "a", Path: somePath}, {Name: "a", Path: other}}, "given twice"},
	} {
		calls := 0
		cfg := Config{Connect: func(context.Context) (*store.Conn, error) { calls++; return nil, io.EOF }}
		_, err := Realise(context.Background(), cfg, tc.roots)
		if err == nil || !strings.Contains(err.Error(), tc.want) || calls != 0 || Transient(err) {
			t.Errorf("roots %v: err %v (want %q), %d connects", tc.roots, err, tc.want, calls)
		}
	}
	// The same root twice under one name is fine.
	if err := checkRoots([]Root{{Name: "a", Path: somePath}, {Name: "a", Path: somePath}}); err != nil {
		t.Error(err)
	}
}

func TestNotFoundError(t *testing.T) {
	e := &NotFoundError{Paths: []string{somePath}, Caches: []string{"http://a", "http://b"}}
	if got := e.Error(); !strings.Contains(got, somePath+" not in the store and no substituter has it (asked http://a, http://b)") {
		t.Errorf("%q", got)
	}
	e = &NotFoundError{Paths: []string{somePath, somePath}}
	if got := e.Error(); !strings.Contains(got, "has them (asked the store's own substituters)") {
		t.Errorf("%q", got)
	}
	if !errors.Is(e, ErrNotSubstitutable) {
		t.Error("not ErrNotSubstitutable")
	}
}

func TestReportOutcome(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{fmt.Errorf("%w: x", ErrGaveUp), "gave-up"},
		{errors.New("x"), "failed"},
	} {
		r := &Report{Started: time.Now()}
		r.finish(tc.err)
		if r.Outcome != tc.want || r.Substituted == nil || (tc.err != nil) != (r.Error != "") {
			t.Errorf("finish(%v): %+v", tc.err, r)
		}
	}
}

func TestTrackerSeesGCWait(t *testing.T) {
	var logged []string
	tr := newTracker(&Config{Log: func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) }}, &Report{})
	feed(tr, "finding garbage collector roots...")
	if tr.waitedForGC() {
		t.Error("a scan of the roots taken for a wait")
	}
	feed(tr, "waiting for the big garbage collector lock...")
	if !tr.waitedForGC() {
		t.Error("the wait was not noticed")
	}
	if len(logged) != 0 {
		t.Errorf("info lines logged without -v: %q", logged)
	}
}
