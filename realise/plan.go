package realise

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nix-aurora/nix-aurora/binarycache"
	"github.com/nix-aurora/nix-aurora/store"
)

// open returns the caches to read, and the errors of those that could not
// be opened; the roots' closure indexes are asked for at the same time.
// The error is non-nil only when none opened and some failed transiently:
// retrying later may help, falling back would not.
func (d *Direct) open(ctx context.Context, roots []string, logf func(string, ...any)) (binarycache.Caches, []error, error) {
	if len(d.Caches) > 0 {
		return d.Caches, nil, nil
	}
	if len(d.URLs) == 0 {
		return nil, nil, nil
	}
	opts := d.Options
	if opts.Logf == nil {
		opts.Logf = logf
	}
	d.openedMu.Lock()
	defer d.openedMu.Unlock()
	var urls []string
	for _, u := range d.URLs {
		if d.opened[u] == nil {
			urls = append(urls, u)
		}
	}
	var failed []error
	if len(urls) > 0 {
		// The plan's first requests go out with nix-cache-info's.
		opts.ClosureIndexes = roots
		// The caches live for this run: a retry asks only for what it
		// has not verified yet.
		opts.RememberNarInfos = true
		fresh, errs := binarycache.OpenEach(ctx, urls, opts)
		if d.opened == nil {
			d.opened = map[string]*binarycache.Cache{}
		}
		for i, c := range fresh {
			if c == nil {
				failed = append(failed, errs[i])
				continue
			}
			d.opened[urls[i]] = c
		}
	}
	var caches binarycache.Caches
	for _, u := range d.URLs { // the configured order among equal priorities
		if c := d.opened[u]; c != nil {
			caches = append(caches, c)
		}
	}
	caches.Sort()
	if ctx.Err() != nil {
		return nil, nil, fmt.Errorf("open the substituters: %w", errList(append([]error{ctx.Err()}, failed...)))
	}
	if len(caches) == 0 {
		for _, e := range failed {
			if binarycache.IsTransient(e) {
				return nil, nil, fmt.Errorf("no substituter can be reached: %w", errList(failed))
			}
		}
	}
	return caches, failed, nil
}

// knownNarInfos is how many narinfos caches have verified in this run.
func knownNarInfos(caches binarycache.Caches) int {
	n := 0
	for _, c := range caches {
		n += c.KnownNarInfos()
	}
	return n
}

// refusedCaches returns the failures of caches that answered with
// something nix-init refuses (an endless or malformed nix-cache-info, a
// page that is no binary cache...), or nil when every cache that failed is
// one nix-init cannot speak to at all. Only then may the daemon take over:
// it would read a refused cache too, with fewer checks and no bound on
// what it buffers.
func refusedCaches(failed []error) error {
	var refused []error
	for _, e := range failed {
		if !errors.Is(e, binarycache.ErrUnsupported) {
			refused = append(refused, e)
		}
	}
	if len(refused) == 0 {
		return nil
	}
	return &RefusedCacheError{Errs: refused}
}

// errList is several errors as one, on one line.
type errList []error

func (l errList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = oneLine(e.Error())
	}
	return strings.Join(msgs, "; ")
}

func (l errList) Unwrap() []error { return l }

func describeFailures(errs []error) string {
	var msgs []string
	for _, e := range errs {
		var be *binarycache.Error
		if errors.As(e, &be) && be.Cache != "" && be.Err != nil {
			msgs = append(msgs, be.Cache+" ("+oneLine(be.Err.Error())+")")
		} else {
			msgs = append(msgs, oneLine(e.Error()))
		}
	}
	return strings.Join(msgs, "; ")
}

// cacheURLs are the caches' URLs, in their order, for messages that name
// the caches asked.
func cacheURLs(cs binarycache.Caches) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.URL()
	}
	return out
}

// notFoundPath returns the store path a planning error says no cache has,
// or "" when the error is something else.
func notFoundPath(err error) string {
	if !errors.Is(err, binarycache.ErrNotFound) {
		return ""
	}
	var found string
	walkErrors(err, func(e error) bool {
		var be *binarycache.Error
		if be, _ = e.(*binarycache.Error); be != nil && store.ValidatePath(be.Path) == nil && errors.Is(be, binarycache.ErrNotFound) {
			found = be.Path
			return false
		}
		return true
	})
	return found
}

// walkErrors calls fn on err and everything it wraps, depth first, until
// fn returns false.
func walkErrors(err error, fn func(error) bool) bool {
	if err == nil {
		return true
	}
	if !fn(err) {
		return false
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return walkErrors(u.Unwrap(), fn)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if !walkErrors(e, fn) {
				return false
			}
		}
	}
	return true
}
