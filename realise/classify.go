package realise

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/nix-aurora/nix-aurora/store"
)

// substitutionLog explains why the daemon failed to substitute, from the
// structure of its log stream where it can: every download is a
// file-transfer activity naming its URL, Nix retries a download inside
// that activity (a complaint naming the URL of a transfer still running is
// a retry notice) and reports its final failure after the activity ended.
// A failed download is transient unless the cache answered with an HTTP
// status that says the file is missing or forbidden. That holds on every
// Nix version in the matrix (2.8, 2.26, 2.34), whatever curl's wording,
// and whatever the daemon's own final error says ("build of 'P' failed",
// "path 'P' is required, but there is no substituter that can build it",
// "some references of path 'P' could not be realised": consequences, not
// causes). Refused substitutes (signature, hash, a NAR missing from a
// cache that lists it) are recognised by their messages, which are the
// same on every version (see refusalMarkers).
type substitutionLog struct {
	mu        sync.Mutex
	running   map[uint64]string // file transfers in progress: activity → URL
	ended     map[string]bool   // URLs of the transfers that ended
	retry     *cause            // the last complaint about a transfer still running
	final     *cause            // the last failure of a transfer that had ended
	permanent *cause            // the first failure that cannot heal
}

// cause is a line of the daemon's log that explains a failure.
type cause struct {
	text string
	heal bool
}

func newSubstitutionLog() *substitutionLog {
	return &substitutionLog{running: map[uint64]string{}, ended: map[string]bool{}}
}

// watch installs l as the logger of conn, passing every event on to the
// logger in place, and returns the function that puts that one back.
func (l *substitutionLog) watch(conn *store.Conn) (restore func()) {
	prev := conn.Logger()
	conn.SetLogger(func(ev store.Event) {
		l.event(ev)
		if prev != nil {
			prev(ev)
		}
	})
	return func() { conn.SetLogger(prev) }
}

func (l *substitutionLog) event(ev store.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch ev.Kind {
	case store.StartActivity:
		if ev.ActivityType == store.ActFileTransfer {
			if url := fieldString(ev.Fields, 0); url != "" {
				l.running[ev.ActivityID] = url
			}
		}
	case store.StopActivity:
		if url, ok := l.running[ev.ActivityID]; ok {
			delete(l.running, ev.ActivityID)
			l.ended[url] = true
		}
	case store.Log:
		p, ok := parseProblem(oneLine(ev.Text))
		if !ok {
			return
		}
		l.note(p.text)
	}
}

// note takes a warning or error line (without its prefixes).
func (l *substitutionLog) note(text string) {
	text = retryNotice.ReplaceAllString(text, "")
	if url, running := l.transferNamed(text); url != "" {
		c := &cause{text: text, heal: transferCanHeal(text)}
		switch {
		case !c.heal:
			l.setPermanent(c)
		case running:
			l.retry = c
		default:
			l.final = c
		}
		return
	}
	if refusedSubstitute(text) {
		l.setPermanent(&cause{text: withSignatureHint(text)})
	}
}

func (l *substitutionLog) setPermanent(c *cause) {
	if l.permanent == nil {
		l.permanent = c
	}
}

// transferNamed returns the URL of a transfer of this substitution that
// text names, and whether that transfer is still running.
func (l *substitutionLog) transferNamed(text string) (url string, running bool) {
	for _, u := range l.running {
		if strings.Contains(text, "'"+u+"'") {
			return u, true
		}
	}
	for u := range l.ended {
		if strings.Contains(text, "'"+u+"'") {
			return u, false
		}
	}
	return "", false
}

// explain turns err, the failure of a substitution this log watched, into
// a *DiagnosedError when the log says why it failed; otherwise err is
// returned as it is (the tracker still explains it from the messages).
// A cause that cannot heal wins over one that can: retrying does not make
// the refused path acceptable.
func (l *substitutionLog) explain(err error) error {
	var diag *DiagnosedError
	if err == nil || errors.Is(err, context.Canceled) || errors.As(err, &diag) {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var de *store.DaemonError
	if errors.As(err, &de) && !errors.Is(err, store.ErrBroken) {
		// The daemon's own error can be a download's ("unable to download
		// 'URL': …" while it looks for the paths).
		l.note(de.Message)
	}
	var nf *NotFoundError
	switch {
	case l.permanent != nil:
		return &DiagnosedError{Err: err, Cause: l.permanent.text}
	case l.final != nil:
		return &DiagnosedError{Err: err, Cause: l.final.text, Heal: true}
	case l.retry != nil && errors.As(err, &nf):
		// Nix 2.8 logs the last failure of nix-cache-info before the
		// transfer ends; the paths are "unknown" because the cache could
		// not be asked.
		return &DiagnosedError{Err: err, Cause: l.retry.text, Heal: true}
	}
	return err
}

// retryNotice is how Nix ends a download failure that it retries itself:
// "; retrying in N ms", and since 2.34 " (attempt A/T)" after it.
var retryNotice = regexp.MustCompile(`;\s*retrying in \d+ ?ms( \(attempt \d+/\d+\))?$`)

// httpStatus finds the status in Nix's download errors: "HTTP error 503
// ('Service Unavailable')" (2.8), "HTTP error 503" (2.26, 2.34), "HTTP
// error 200 ('OK') (curl error: Timeout was reached)".
var httpStatus = regexp.MustCompile(`HTTP error (\d{3})\b`)

// transferCanHeal reports whether a failed download can succeed later:
// anything but a 4xx status other than 408 (timeout) and 429 (too many
// requests). Network failures (refused, reset, timed out) carry no status
// or the status of a response that broke off, and their wording changes
// with libcurl's version.
func transferCanHeal(text string) bool {
	m := httpStatus.FindStringSubmatch(text)
	if m == nil {
		return true
	}
	code, _ := strconv.Atoi(m[1])
	return code < 400 || code >= 500 || code == 408 || code == 429
}

// refusalMarkers are the messages of a substitute the daemon refused for
// other reasons than its signatures (see signatureMarkers), in the wording
// of every version in the matrix (testdata/daemon).
var refusalMarkers = []string{
	// All: "hash mismatch importing path 'P'; specified: … got: …".
	"hash mismatch importing path",
	// All: "file 'nar/….nar' does not exist in binary cache 'C'".
	"does not exist in binary cache",
}

func refusedSubstitute(text string) bool {
	if refusedSignature(text) {
		return true
	}
	for _, m := range refusalMarkers {
		if strings.Contains(text, m) {
			return true
		}
	}
	return false
}
