package realise

import (
	"context"
	"fmt"

	"github.com/nix-aurora/nix-aurora/internal/human"
	"github.com/nix-aurora/nix-aurora/store"
)

// Daemon substitutes through the store itself: the daemon (or the child
// nix-daemon in single-user mode) fetches from its substituters and those
// passed with SetOptions, and checks signatures against its own keys.
type Daemon struct{}

// Substitute asks the store what it would fetch (failing at once, naming the
// paths, when nothing has them), then has it fetch the closure. A failure
// is explained by what the daemon's log stream showed meanwhile (see
// substitutionLog), so that it is transient or permanent alike on every
// Nix version.
func (Daemon) Substitute(ctx context.Context, s *Session, paths []string) error {
	l := newSubstitutionLog()
	restore := l.watch(s.Conn)
	defer restore()
	return l.explain(substitute(ctx, s, paths))
}

func substitute(ctx context.Context, s *Session, paths []string) error {
	m, err := s.Conn.QueryMissing(ctx, paths)
	if err != nil {
		return fmt.Errorf("query missing paths: %w", err)
	}
	if len(m.Unknown) > 0 {
		return &NotFoundError{Paths: m.Unknown, Caches: s.Config.Substituters}
	}
	if len(m.WillSubstitute) > 0 {
		// Per-path sizes for the log; the daemon's progress reports do not
		// always carry them. Not knowing them is no reason to fail.
		if infos, err := s.Conn.QuerySubstitutablePathInfos(ctx, m.WillSubstitute); err == nil {
			sizes := make(map[string]uint64, len(infos))
			for p, info := range infos {
				sizes[p] = info.DownloadSize
			}
			s.SetDownloadSizes(sizes)
		}
		s.Logf("fetching %s (%s to download, %s unpacked)",
			human.Count(int64(len(m.WillSubstitute)), "path", ""), human.Bytes(m.DownloadSize), human.Bytes(m.NarSize))
	}
	if err := s.Conn.BuildPaths(ctx, paths, store.BuildNormal); err != nil {
		return fmt.Errorf("substitute %d paths: %w", len(paths), err)
	}
	return nil
}
