package realise

import (
	"strings"
	"sync"
	"time"

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
		if t.cfg.Verbose || isWarning(ev.Text) {
			t.cfg.logf("nix: %s", ev.Text)
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

func isWarning(s string) bool {
	return strings.HasPrefix(s, "warning:") || strings.HasPrefix(s, "error:")
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
