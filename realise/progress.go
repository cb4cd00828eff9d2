package realise

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nix-aurora/nix-aurora/internal/human"
	"github.com/nix-aurora/nix-aurora/store"
)

// tracker turns the daemon's activity stream into one line per substituted
// path: Nix reports a "copy path" activity per path, with file transfers
// (whose progress carries the bytes) as its children.
type tracker struct {
	cfg     *Config
	rep     *Report
	session *Session

	mu         sync.Mutex
	activities map[uint64]*activity
	problems   []problem // the daemon's warnings and errors, oldest first
	gcWait     bool      // the daemon said it waits for the GC lock
}

// gcWaitMessage is what Nix logs (at level info) when it has to wait for
// the global GC lock, held by a collection in progress.
const gcWaitMessage = "waiting for the big garbage collector lock"

// waitedForGC reports whether the daemon said it waited for the GC lock.
func (t *tracker) waitedForGC() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.gcWait
}

// maxProblems bounds what a tracker remembers of the daemon's complaints.
const maxProblems = 64

// problem is a warning or error line the daemon logged.
type problem struct {
	text      string // the message on one line, without its "error:"/"warning:" prefixes, response bodies or "; retrying in N ms"
	error     bool   // logged as an error rather than a warning
	final     bool   // not an announcement that Nix itself retries
	transient bool   // about a failure that can heal
	retry     string // "; retrying in N ms" when not final
}

// String is the problem as nix-init logs it: one line, short.
func (p problem) String() string {
	kind := "warning"
	if p.error {
		kind = "error"
	}
	return kind + ": " + p.text + p.retry
}

// parseProblem reads a daemon log line (already on one line): warnings and
// errors are problems, anything else is not.
func parseProblem(line string) (problem, bool) {
	var p problem
	switch {
	case strings.HasPrefix(line, "error:"):
		p.error = true
	case strings.HasPrefix(line, "warning:"):
	default:
		return p, false
	}
	text := line
	for _, prefix := range []string{"warning:", "error:"} {
		text = strings.TrimSpace(strings.TrimPrefix(text, prefix))
	}
	if strings.HasPrefix(text, "error:") { // "warning: error: ..."
		text = strings.TrimSpace(strings.TrimPrefix(text, "error:"))
	}
	p.retry = retryNotice.FindString(text)
	p.final = p.retry == ""
	text = strings.TrimSuffix(text, p.retry)
	// An HTTP error's body can be a whole web page: the status says enough.
	if i := strings.Index(text, " response body:"); i >= 0 {
		text = text[:i]
	}
	p.text = clip(text, 400)
	p.transient = transientMessage(text)
	return p, true
}

// oneLine joins a multi-line message (Nix indents the continuation lines of
// its errors) into one line, so that a log line is one event, and squeezes
// runs of blanks.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// clip shortens s to at most n bytes (on a rune boundary), marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// diagnose explains err with what the daemon logged during the attempt
// (see DiagnosedError). Generic failures (a path no cache has, a build
// that failed) take their cause, and whether they can heal, from the
// daemon's final problems: transient if one of them is and no error line
// is permanent. Failures that are transient anyway (the connection lost,
// the budget ran out mid-call) get the daemon's last transient complaint,
// retry announcements included, so that the message says what was wrong.
func (t *tracker) diagnose(err error) error {
	var diag *DiagnosedError
	if err == nil || errors.Is(err, context.Canceled) || errors.As(err, &diag) {
		return err
	}
	t.mu.Lock()
	probs := slices.Clone(t.problems)
	t.mu.Unlock()
	var lastTransient, lastRetry, firstPermanent string
	permanentError := false
	for _, p := range probs {
		switch {
		case !p.final:
			lastRetry = p.text
		case p.transient:
			lastTransient = p.text
		default:
			if firstPermanent == "" {
				firstPermanent = p.text
			}
			permanentError = permanentError || p.error
		}
	}
	var nf *NotFoundError
	var de *store.DaemonError
	generic := errors.As(err, &nf) || (errors.As(err, &de) && !Transient(err))
	switch {
	case generic && lastTransient != "" && !permanentError:
		return &DiagnosedError{Err: err, Cause: lastTransient, Heal: true}
	case generic && firstPermanent != "":
		return &DiagnosedError{Err: err, Cause: firstPermanent}
	case !generic && Transient(err):
		cause := lastTransient
		if cause == "" {
			cause = lastRetry
		}
		if cause != "" && !strings.Contains(err.Error(), cause) {
			return &DiagnosedError{Err: err, Cause: cause, Heal: true}
		}
	}
	return err
}

type activity struct {
	typ    store.ActivityType
	parent uint64
	path   string
	from   string
	start  time.Time
	bytes  uint64
}

func newTracker(cfg *Config, rep *Report) *tracker {
	return &tracker{cfg: cfg, rep: rep, activities: map[uint64]*activity{}}
}

func (t *tracker) event(ev store.Event) {
	switch ev.Kind {
	case store.Log:
		line := oneLine(ev.Text)
		if strings.Contains(line, gcWaitMessage) {
			t.mu.Lock()
			t.gcWait = true
			t.mu.Unlock()
		}
		p, isProblem := parseProblem(line)
		if isProblem {
			t.mu.Lock()
			if len(t.problems) == maxProblems {
				t.problems = append(t.problems[:0], t.problems[1:]...)
			}
			t.problems = append(t.problems, p)
			t.mu.Unlock()
		}
		switch {
		case line == "":
		case t.cfg.Verbose:
			t.cfg.logf("nix: %s", clip(line, 2000))
		case isProblem:
			t.cfg.logf("nix: %s", p)
		}
	case store.StartActivity:
		a := &activity{typ: ev.ActivityType, parent: ev.Parent, start: time.Now()}
		if ev.ActivityType == store.ActCopyPath {
			a.path = fieldString(ev.Fields, 0)
			a.from = fieldString(ev.Fields, 1)
		}
		t.mu.Lock()
		t.activities[ev.ActivityID] = a
		t.mu.Unlock()
	case store.Result:
		if ev.ResultType != store.ResProgress {
			return
		}
		t.mu.Lock()
		if a := t.activities[ev.ActivityID]; a != nil {
			if done, ok := fieldUint(ev.Fields, 0); ok {
				a.bytes = done
			}
		}
		t.mu.Unlock()
	case store.StopActivity:
		t.stop(ev.ActivityID)
	}
}

func (t *tracker) stop(id uint64) {
	t.mu.Lock()
	a := t.activities[id]
	delete(t.activities, id)
	if a == nil {
		t.mu.Unlock()
		return
	}
	if a.typ == store.ActFileTransfer {
		// Credit the download to the copy it belongs to.
		for p := t.activities[a.parent]; p != nil; p = t.activities[p.parent] {
			if p.typ == store.ActCopyPath {
				p.bytes += a.bytes
				break
			}
		}
	}
	t.mu.Unlock()
	if a.typ != store.ActCopyPath || a.path == "" {
		return
	}
	pr := PathReport{Path: a.path, From: a.from, Bytes: a.bytes, Seconds: time.Since(a.start).Seconds()}
	if t.session != nil {
		if n, ok := t.session.downloadSize(a.path); ok {
			pr.Bytes = n
		}
		t.session.Fetched(pr)
	}
	t.cfg.logf("fetched %s from %s (%s, %.2fs)", a.path, a.from, human.Bytes(pr.Bytes), pr.Seconds)
}

func fieldString(fields []any, i int) string {
	if i < len(fields) {
		if s, ok := fields[i].(string); ok {
			return s
		}
	}
	return ""
}

func fieldUint(fields []any, i int) (uint64, bool) {
	if i < len(fields) {
		v, ok := fields[i].(uint64)
		return v, ok
	}
	return 0, false
}
