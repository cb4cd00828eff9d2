package realise

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nix-aurora/nix-aurora/store"
)

// IncompleteError says that paths of a closure are valid in the store but
// missing from its directory: deleted behind the store's back, or left so
// by a registration that outlived an import's cleanup. Rooting such a
// closure would report success for processes that cannot start.
type IncompleteError struct {
	Dir   string   // the store's real directory
	Paths []string // valid, not in Dir
}

func (e *IncompleteError) Error() string {
	what := "a path is"
	if len(e.Paths) > 1 {
		what = fmt.Sprintf("%d paths are", len(e.Paths))
	}
	return fmt.Sprintf("%s valid in the store but missing from %s: %s; as the store's owner (root for a daemon), run `nix-store --verify --repair`, which fetches them again or drops them from the database, then run again",
		what, e.Dir, strings.Join(e.Paths, ", "))
}

// realStoreDir is where the files of loc's store are, when that can be
// known: under the store's root for our own store, and next to its state
// directory for a daemon whose socket is where Nix puts it.
func realStoreDir(loc store.Location) (string, bool) {
	state, ok := gcStateDir(loc) // <root>/nix/var/nix
	if !ok {
		return "", false
	}
	return filepath.Join(filepath.Dir(filepath.Dir(state)), "store"), true
}

// checkComplete fails with an IncompleteError when a path of the closures
// of paths (valid, and held by temp roots) has nothing on disk: one lstat
// per path, in the store's real directory. Where that directory cannot be
// known (a daemon on a socket elsewhere), it checks nothing.
func checkComplete(ctx context.Context, conn *store.Conn, paths []string, logf func(string, ...any)) error {
	dir, ok := realStoreDir(conn.Location())
	if !ok {
		return nil
	}
	closure, err := closureOf(ctx, conn, paths)
	if err != nil {
		return err
	}
	var missing []string
	for _, p := range closure {
		real := filepath.Join(dir, filepath.Base(p))
		_, err := os.Lstat(real)
		switch {
		case err == nil:
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, p)
		default:
			// Not a sign of a missing path (a store directory this user
			// cannot search): the check cannot help here.
			logf("cannot check that the closure is on disk: %v", err)
			return nil
		}
	}
	if len(missing) > 0 {
		return &IncompleteError{Dir: dir, Paths: missing}
	}
	return nil
}

// closureOf is the closure of paths in the store, in no particular order:
// one pipelined round of path infos per level of the closure.
func closureOf(ctx context.Context, conn *store.Conn, paths []string) ([]string, error) {
	seen := pathSet(paths)
	closure := append([]string(nil), paths...)
	for level := paths; len(level) > 0; {
		infos, err := conn.QueryPathInfos(ctx, level)
		if err != nil {
			return nil, fmt.Errorf("check the closure on disk: %w", err)
		}
		var next []string
		for _, p := range level {
			info, ok := infos[p]
			if !ok {
				return nil, fmt.Errorf("check the closure on disk: %s: %w", p, store.ErrNotValid)
			}
			for _, ref := range info.References {
				if !seen[ref] {
					seen[ref] = true
					next = append(next, ref)
				}
			}
		}
		closure = append(closure, next...)
		level = next
	}
	return closure, nil
}
