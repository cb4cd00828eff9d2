package realise

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nix-aurora/nix-aurora/store"
)

var (
	// ErrGaveUp means transient failures went on until the time budget ran
	// out (nix-init exit code 3).
	ErrGaveUp = errors.New("gave up after retries")
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

// transientMarkers are fragments of daemon messages for failures that can
// heal by themselves: the cache's HTTP errors that Nix itself retries, and
// network failures reported by curl.
var transientMarkers = []string{
	"HTTP error 5", "HTTP error 408", "HTTP error 429",
	"Couldn't connect to server", "Connection refused", "Connection reset",
	"Timeout was reached", "Operation timed out", "timed out",
	"Failure when receiving data", "Recv failure", "Send failure",
	"SSL connect error", "Could not resolve host", "Empty reply from server",
	"Transferred a partial file", "database is locked",
	"HTTP/2 stream", "Server returned nothing",
}

// Transient reports whether err can heal by itself, so that trying again
// (on a new connection) makes sense.
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var nf *NotFoundError
	if errors.As(err, &nf) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		// A single call that timed out (not the whole budget, which the
		// retry loop checks itself) can heal.
		return true
	}
	var de *store.DaemonError
	if errors.As(err, &de) && !errors.Is(err, store.ErrBroken) {
		for _, m := range transientMarkers {
			if strings.Contains(de.Message, m) {
				return true
			}
		}
		return false
	}
	return store.IsConnectionError(err)
}
