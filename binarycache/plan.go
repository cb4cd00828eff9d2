package binarycache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/nix-aurora/nix-aurora/store"
)

// How many closure indexes and narinfos Plan fetches at once (each cache
// also bounds its own connections).
const (
	planIndexParallel   = 16
	planNarInfoParallel = 64
)

// PlannedPath is a path to substitute: its verified narinfo and the cache
// that has it.
type PlannedPath struct {
	Path  string
	Info  *NarInfo
	Cache *Cache
}

// Plan is what it takes to make some roots valid.
type Plan struct {
	// Paths are the missing paths of the roots' closures, each once,
	// references before the paths that refer to them.
	Paths []PlannedPath
	// IndexedRoots are the missing roots planned from a closure index;
	// the others were discovered narinfo by narinfo.
	IndexedRoots []string
	// DownloadSize is the sum of the known FileSizes, NarSize of NarSizes.
	DownloadSize, NarSize uint64
}

// Plan finds what must be substituted to make roots (and so their
// closures) valid. isValid reports which of the paths it is given are
// valid in the store (one batch per call; nil means none is). Below a valid
// path nothing is looked at: a valid path's closure is valid.
//
// For each missing root Plan first asks the caches, in order, for the
// root's closure index (one request; see ClosureIndexSuffix) and, when one
// checks out, takes the whole closure from it. Roots without a usable index
// are explored breadth first: each level's narinfos are fetched in
// parallel through Lookup, then the next level's references are checked
// against the store in one batch. Every narinfo in the plan was verified
// (signature, store path, required fields).
func (cs Caches) Plan(ctx context.Context, roots []string, isValid func([]string) ([]string, error)) (*Plan, error) {
	for _, r := range roots {
		if err := store.ValidatePath(r); err != nil {
			return nil, &Error{Op: "plan", Path: r, Err: err}
		}
	}
	p := &planner{cs: cs, isValid: isValid, valid: map[string]bool{}, found: map[string]*PlannedPath{}, referrer: map[string]string{}}
	roots = sortedUnique(slices.Clone(roots))
	missing, err := p.filterValid(roots)
	if err != nil {
		return nil, err
	}
	plan := &Plan{}

	// 1. Closure indexes, one request per root in the best case. Each
	// index is merged as soon as it is read, so that the paths roots share
	// are held once.
	indexed := make([]bool, len(missing))
	var fromIndex []string
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(planIndexParallel)
	for i, root := range missing {
		g.Go(func() error {
			infos, c, err := cs.closureIndex(gctx, root)
			if err != nil || infos == nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			indexed[i] = true
			for _, ni := range infos {
				if _, ok := p.found[ni.StorePath]; !ok {
					p.found[ni.StorePath] = &PlannedPath{Path: ni.StorePath, Info: ni, Cache: c}
					fromIndex = append(fromIndex, ni.StorePath)
				}
			}
			return nil
		})
	}
	err = g.Wait()
	for _, c := range cs {
		c.dropPrefetched() // of roots that were valid, or found elsewhere
	}
	if err != nil {
		return nil, &Error{Op: "plan", Err: err}
	}
	var level []string
	for i, root := range missing {
		if indexed[i] {
			plan.IndexedRoots = append(plan.IndexedRoots, root)
		} else {
			level = append(level, root)
		}
	}
	slices.Sort(fromIndex)
	if len(fromIndex) > 0 {
		still, err := p.filterValid(fromIndex)
		if err != nil {
			return nil, err
		}
		keep := map[string]bool{}
		for _, s := range still {
			keep[s] = true
		}
		for _, s := range fromIndex {
			if !keep[s] {
				delete(p.found, s)
			}
		}
	}

	// 2. Breadth first for the other roots.
	seen := map[string]bool{}
	for _, s := range fromIndex {
		seen[s] = true
	}
	var bfs []string
	for _, r := range level {
		if !seen[r] {
			seen[r] = true
			bfs = append(bfs, r)
		}
	}
	for len(bfs) > 0 {
		infos := make([]PlannedPath, len(bfs))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(planNarInfoParallel)
		for i, path := range bfs {
			g.Go(func() error {
				ni, c, err := cs.Lookup(gctx, path)
				if err != nil {
					if by, ok := p.referrer[path]; ok {
						return fmt.Errorf("%s, a reference of %s: %w", path, by, err)
					}
					return err
				}
				infos[i] = PlannedPath{Path: path, Info: ni, Cache: c}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return nil, &Error{Op: "plan", Err: err}
		}
		var next []string
		for i := range infos {
			pp := infos[i]
			p.found[pp.Path] = &pp
			for _, ref := range pp.Info.ReferencePaths() {
				if !seen[ref] {
					seen[ref] = true
					p.referrer[ref] = pp.Path
					next = append(next, ref)
				}
			}
		}
		if bfs, err = p.filterValid(next); err != nil {
			return nil, err
		}
	}

	// 3. References first.
	order, err := p.topo()
	if err != nil {
		return nil, &Error{Op: "plan", Err: err}
	}
	for _, path := range order {
		pp := p.found[path]
		plan.Paths = append(plan.Paths, *pp)
		plan.DownloadSize += pp.Info.FileSize
		plan.NarSize += pp.Info.NarSize
	}
	return plan, nil
}

type planner struct {
	cs       Caches
	isValid  func([]string) ([]string, error)
	valid    map[string]bool
	found    map[string]*PlannedPath
	referrer map[string]string
}

// filterValid returns the paths that are not valid, asking the store once.
func (p *planner) filterValid(paths []string) ([]string, error) {
	if len(paths) == 0 || p.isValid == nil {
		return paths, nil
	}
	v, err := p.isValid(paths)
	if err != nil {
		return nil, &Error{Op: "plan", Err: fmt.Errorf("asking the store which paths are valid: %w", err)}
	}
	for _, s := range v {
		p.valid[s] = true
	}
	var out []string
	for _, s := range paths {
		if !p.valid[s] {
			out = append(out, s)
		}
	}
	return out, nil
}

// topo orders the found paths, references first, deterministically.
func (p *planner) topo() ([]string, error) {
	paths := make([]string, 0, len(p.found))
	for s := range p.found {
		paths = append(paths, s)
	}
	slices.Sort(paths)
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var order []string
	var visit func(string) error
	visit = func(s string) error {
		switch state[s] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("reference cycle through %s", s)
		}
		state[s] = visiting
		for _, ref := range p.found[s].Info.ReferencePaths() {
			if ref == s || p.found[ref] == nil {
				continue // self-reference, or valid already
			}
			if err := visit(ref); err != nil {
				return err
			}
		}
		state[s] = done
		order = append(order, s)
		return nil
	}
	for _, s := range paths {
		if err := visit(s); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// closureIndex asks the caches in order for root's closure index and
// returns the first that checks out, or nil (not an error) when none does.
// Only a cancelled context is an error.
func (cs Caches) closureIndex(ctx context.Context, root string) ([]*NarInfo, *Cache, error) {
	for _, c := range cs {
		infos, err := c.ClosureIndex(ctx, root)
		if err == nil {
			return infos, c, nil
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		if !errors.Is(err, ErrNotFound) {
			c.logf("warning: ignoring the closure index, planning by narinfos instead: %v", err)
		}
	}
	return nil, nil, nil
}
