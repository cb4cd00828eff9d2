package realise

import (
	"context"
	"fmt"
	"sync"

	"github.com/nix-aurora/nix-aurora/binarycache"
	"github.com/nix-aurora/nix-aurora/internal/human"
)

// transientFailures collects the transient download failures of a fetch,
// which do not stop the other downloads: what downloads and verifies is
// imported, and the attempt then fails with the first failure, so that
// the retry fetches only what is still missing. Against a cache that fails
// a share of all requests, each attempt gets further than the last instead
// of starting over (with Nix's download-attempts = 1, a 7-path closure at
// 30% 503s would otherwise need about 1 attempt in 300 to go through).
type transientFailures struct {
	mu    sync.Mutex
	first error
	n     int
}

// add records err and reports true when it is transient and the fetch
// goes on; false (a permanent failure, or the fetch is stopped) means the
// caller fails the fetch with err.
func (t *transientFailures) add(ctx context.Context, err error) bool {
	if ctx.Err() != nil || !binarycache.IsTransient(err) {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.first == nil {
		t.first = err
	}
	t.n++
	return true
}

// err is the fetch's outcome once everything else is done: the first
// transient failure, naming how many there were.
func (t *transientFailures) err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.first == nil:
		return nil
	case t.n == 1:
		return t.first
	}
	return fmt.Errorf("%w (and %s failed)", t.first, human.Count(int64(t.n-1), "more download", "more downloads"))
}
