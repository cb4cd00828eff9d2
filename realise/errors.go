package realise

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nix-aurora/nix-aurora/binarycache"
	"github.com/nix-aurora/nix-aurora/store"
)

var (
	// ErrGaveUp means transient failures went on until the time budget ran
	// out (nix-init exit code 3).
	ErrGaveUp = errors.New("gave up")
	// ErrNotSubstitutable means no substituter has a path (a permanent
	// failure: exit code 1).
	ErrNotSubstitutable = errors.New("no substituter has the path")
)

// NotFoundError names the paths that no cache could provide and the caches
// that were asked, so that a user knows what to push where.
type NotFoundError struct {
	Paths  []string
	Caches []string
}

func (e *NotFoundError) Error() string {
	caches := "the store's own substituters"
	if len(e.Caches) > 0 {
		caches = strings.Join(e.Caches, ", ")
	}
	return fmt.Sprintf("%s not in the store and no substituter has %s (asked %s); push the closure to one of them (nixaurora push)",
		strings.Join(e.Paths, ", "), pronoun(len(e.Paths)), caches)
}

func pronoun(n int) string {
	if n == 1 {
		return "it"
	}
	return "them"
}

func (e *NotFoundError) Unwrap() error { return ErrNotSubstitutable }

// RefusedCacheError is a substituter that answered with content nix-init
// refuses (see refusedCaches): a permanent failure, never handed to the
// daemon, that names each cache and says what it sent.
type RefusedCacheError struct {
	Errs []error // the caches' failures, each a *binarycache.Error
}

func (e *RefusedCacheError) Error() string {
	return fmt.Sprintf("refusing %s %s; the daemon is not asked to substitute instead (it would read %s too)",
		plural(len(e.Errs), "substituter", "substituters"), describeFailures(e.Errs), plural(len(e.Errs), "it", "them"))
}

func (e *RefusedCacheError) Unwrap() []error { return e.Errs }

// DiagnosedError is a failure explained by what the daemon logged while it
// happened. Nix 2.8 reports a substitution that failed as just "build of
// 'P' failed", and a cache it could not reach at all as one that does not
// have the path; the reason is in an earlier warning or error line, which
// decides whether retrying can help.
type DiagnosedError struct {
	Err   error
	Cause string // the daemon's line, on one line, without "error:"/"warning:"
	// Heal says the cause can heal by itself (a cache unreachable, HTTP 5xx).
	Heal bool
}

func (e *DiagnosedError) Error() string {
	var nf *NotFoundError
	if e.Heal && errors.As(e.Err, &nf) {
		// The daemon could not ask a cache: it does not know whether the
		// cache has the paths.
		caches := "the store's own substituters"
		if len(nf.Caches) > 0 {
			caches = strings.Join(nf.Caches, ", ")
		}
		return fmt.Sprintf("cannot tell whether a substituter has %s (asked %s): %s",
			strings.Join(nf.Paths, ", "), caches, e.Cause)
	}
	return fmt.Sprintf("%v: %s", e.Err, e.Cause)
}

func (e *DiagnosedError) Unwrap() error { return e.Err }

// transientMarkers are fragments of daemon messages for failures that can
// heal by themselves: the cache's HTTP errors that Nix itself retries, and
// network failures reported by curl.
var transientMarkers = []string{
	"HTTP error 5", "HTTP error 408", "HTTP error 429",
	"Couldn't connect to server",  // libcurl 7
	"Could not connect to server", // libcurl 8
	"Connection refused", "Connection reset",
	"Timeout was reached", "Operation timed out", "timed out",
	"Failure when receiving data", "Recv failure", "Send failure",
	"SSL connect error", "Could not resolve host", "Empty reply from server",
	"Transferred a partial file", "database is locked",
	// Nix 2.8 workers racing on the per-user narinfo cache (SQLite).
	"executing SQLite statement", "SQLite database",
	"HTTP/2 stream", "Server returned nothing",
}

// Transient reports whether err can heal by itself, so that trying again
// (on a new connection) makes sense.
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var diag *DiagnosedError
	if errors.As(err, &diag) {
		return diag.Heal
	}
	var nf *NotFoundError
	var rc *RefusedCacheError
	if errors.As(err, &nf) || errors.As(err, &rc) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		// A single call that timed out (not the whole budget, which the
		// retry loop checks itself) can heal.
		return true
	}
	// The binary cache client's errors (Direct) say themselves whether
	// they can heal; some wrap io.EOF without being connection errors.
	var be *binarycache.Error
	if errors.As(err, &be) {
		return binarycache.IsTransient(err)
	}
	var de *store.DaemonError
	if errors.As(err, &de) && !errors.Is(err, store.ErrBroken) {
		return transientMessage(de.Message)
	}
	return store.IsConnectionError(err)
}

// transientMessage reports whether a daemon message describes a failure
// that can heal.
func transientMessage(msg string) bool {
	for _, m := range transientMarkers {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}

// signatureMarkers are the messages of a path refused for its signatures,
// in the wording of every Nix version in the matrix (testdata/daemon).
var signatureMarkers = []string{
	"lacks a valid signature",            // AddToStoreNar, Nix < 2.12
	"lacks a signature by a trusted key", // AddToStoreNar, Nix ≥ 2.12
	// Substitution: "the substitute for 'P' from 'C' is not signed by any
	// of the keys in 'trusted-public-keys'" (2.8), "ignoring substitute for
	// 'P' from 'C', as it's not signed by any of the keys in …" (≥ 2.26).
	"not signed by any of the keys",
}

// untrustedKeyHint says what to do about a refused signature.
const untrustedKeyHint = "the store does not trust the key that signed it: add it to the daemon's trusted-public-keys"

// refusedSignature reports whether a daemon message says that a path was
// refused for lack of a trusted signature.
func refusedSignature(msg string) bool {
	for _, m := range signatureMarkers {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}

// withSignatureHint is msg with untrustedKeyHint when it is about a
// refused signature.
func withSignatureHint(msg string) string {
	if refusedSignature(msg) {
		return msg + " (" + untrustedKeyHint + ")"
	}
	return msg
}
