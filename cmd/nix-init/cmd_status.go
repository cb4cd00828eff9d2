package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"github.com/nix-aurora/nix-aurora/gcroots"
	"github.com/nix-aurora/nix-aurora/internal/human"
	"github.com/nix-aurora/nix-aurora/store"
)

const statusUsage = `Usage: nix-init status [FLAGS] [STOREPATH...]

Shows what nix-init sees from here: the store and its mode, the daemon's
version and whether it trusts us, the substituters and keys in effect, each
STOREPATH (default: the targets of the roots) valid or missing with its
download size, and the roots under --gc-root-dir, dangling ones marked.

Flags:
`

func runStatus(ctx context.Context, e *env, args []string) int {
	var so storeOptions
	fs := pflag.NewFlagSet("nix-init status", pflag.ContinueOnError)
	fs.SetOutput(e.stderr)
	so.addFlags(fs)
	fs.Usage = func() { fmt.Fprint(e.stderr, statusUsage+fs.FlagUsages()+"\n"+exitCodesHelp) }
	if err := fs.Parse(args); err != nil {
		return parseFailed(e, "nix-init status", err)
	}
	paths := fs.Args()
	for _, p := range paths {
		if err := store.ValidatePath(p); err != nil {
			fmt.Fprintf(e.stderr, "nix-init status: %v\n", err)
			return exitUsage
		}
	}
	st, err := so.resolve(e)
	if err != nil {
		return fail(e, err)
	}
	if err := printStatus(ctx, e, &so, st, paths); err != nil {
		return fail(e, err)
	}
	return exitOK
}

func printStatus(ctx context.Context, e *env, so *storeOptions, st *settings, paths []string) error {
	w := e.stdout
	fmt.Fprintf(w, "store:        %s (%s mode)\n", st.location, st.location.Mode)
	src := "nix.conf"
	if st.fromFlags {
		src = "flags"
	}
	fmt.Fprintf(w, "substituters: %s (from %s)\n", orNone(st.substituters), src)
	fmt.Fprintf(w, "trusted keys: %s\n", orNone(st.trustedKeys))

	roots, rootsErr := gcroots.List(so.gcRootDir)
	// The roots' targets are checked whatever paths were asked about: a
	// root's state depends on its target's validity.
	var targets []string
	for _, r := range roots {
		if !r.Stray && store.ValidatePath(r.Target) == nil {
			targets = append(targets, r.Target)
		}
	}
	if len(paths) == 0 {
		paths = targets
	}

	conn, err := so.connect(ctx, st)
	if err != nil {
		fmt.Fprintf(w, "daemon:       unreachable: %v\n", err)
		return err
	}
	defer conn.Close()
	fmt.Fprintf(w, "daemon:       Nix %s, protocol %d.%d, %s\n", conn.DaemonVersion(), conn.Protocol()>>8, conn.Protocol()&0xff, trustText(conn.Trust(), st.location))

	valid := map[string]bool{}
	if all := dedupe(append(slices.Clone(paths), targets...)); len(all) > 0 {
		vs, err := conn.QueryValidPaths(ctx, all, false)
		if err != nil {
			return fmt.Errorf("query valid paths: %w", err)
		}
		for _, p := range vs {
			valid[p] = true
		}
	}
	if len(paths) > 0 {
		fmt.Fprintf(w, "\npaths:\n")
		tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
		for _, p := range dedupe(paths) {
			fmt.Fprintf(tw, "  %s\t%s\n", p, pathState(ctx, conn, p, valid[p]))
		}
		tw.Flush()
	}

	abs, _ := filepath.Abs(so.gcRootDir)
	fmt.Fprintf(w, "\nroots in %s:\n", abs)
	if rootsErr != nil {
		fmt.Fprintf(w, "  cannot list: %v\n", rootsErr)
		return nil
	}
	if len(roots) == 0 {
		fmt.Fprintf(w, "  (none)\n")
	}
	// The daemon knows which links it follows, whatever its state directory.
	registered, findErr := conn.FindRoots(ctx)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	for _, r := range roots {
		fmt.Fprintf(tw, "  %s\t-> %s\t%s\n", r.Name, r.Target, rootState(r, valid, registered, findErr))
	}
	tw.Flush()
	return nil
}

func pathState(ctx context.Context, conn *store.Conn, p string, valid bool) string {
	if valid {
		return "valid"
	}
	m, err := conn.QueryMissing(ctx, []string{p})
	switch {
	case err != nil:
		return fmt.Sprintf("missing (cannot ask the substituters: %v)", err)
	case len(m.Unknown) > 0:
		return "missing, no substituter has it"
	default:
		return fmt.Sprintf("missing, %s to fetch: %s download, %s unpacked",
			human.Count(int64(len(m.WillSubstitute)), "path", ""), human.Bytes(m.DownloadSize), human.Bytes(m.NarSize))
	}
}

func rootState(r gcroots.Root, valid map[string]bool, registered map[string]string, findErr error) string {
	if r.Stray {
		return "not a root (not a link into the store)"
	}
	if !valid[r.Target] {
		// The daemon lists only roots to valid paths, so whether the link
		// is registered cannot be told; nor does it matter until the
		// target is made valid again (run nix-init).
		return "DANGLING (target not valid in the store)"
	}
	parts := []string{"valid"}
	switch {
	case findErr != nil:
		parts = append(parts, fmt.Sprintf("registration unknown (%v)", findErr))
	case registered[r.Link] == r.Target:
		parts = append(parts, "registered")
	default:
		parts = append(parts, "NOT registered: the GC does not see it")
	}
	return strings.Join(parts, ", ")
}

func trustText(t store.Trust, loc store.Location) string {
	switch {
	case t == store.Trusted:
		return "trusted"
	case t == store.NotTrusted:
		return "not trusted (the daemon's own keys and trusted-substituters apply)"
	case loc.Mode == store.Local:
		return "trusted (single-user: our own store)"
	default:
		return "trust unknown (daemon older than Nix 2.15)"
	}
}

func orNone(xs []string) string {
	if len(xs) == 0 {
		return "(none)"
	}
	return strings.Join(xs, " ")
}

func dedupe(xs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
