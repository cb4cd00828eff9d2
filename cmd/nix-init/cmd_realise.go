package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/nix-aurora/nix-aurora/internal/human"
	"github.com/nix-aurora/nix-aurora/realise"
	"github.com/nix-aurora/nix-aurora/store"
)

const realiseUsage = `Usage: nix-init [FLAGS] [NAME=]STOREPATH...
       nix-init status [FLAGS] [STOREPATH...]
       nix-init version
       nix-init render --template FILE --out NAME --separator SEP [--binding NAME]...

Makes the closure of each STOREPATH valid in the node's Nix store, fetching
what is missing from the substituters, and roots it as GC-ROOT-DIR/NAME
(NAME defaults to the path's base name). Run in a Thermos sandbox as its
first process; 'status' shows what a sandbox has, for debugging by hand.

Flags:
`

// parseFailed reports a flag that does not parse (pflag prints nothing
// itself with ContinueOnError) and returns the exit code; --help is no error.
func parseFailed(e *env, cmd string, err error) int {
	if errors.Is(err, pflag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintf(e.stderr, "%s: %v (see %s --help)\n", cmd, err, cmd)
	return exitUsage
}

func isGaveUp(err error) bool { return errors.Is(err, realise.ErrGaveUp) }

func runRealise(ctx context.Context, e *env, args []string) int {
	var (
		so      storeOptions
		timeout time.Duration
		quiet   bool
		report  string
		gcWait  time.Duration
	)
	fs := pflag.NewFlagSet("nix-init", pflag.ContinueOnError)
	fs.SetOutput(e.stderr)
	so.addFlags(fs)
	fs.DurationVar(&timeout, "timeout", 10*time.Minute, "total time budget, retries included")
	fs.DurationVar(&gcWait, "gc-wait", realise.DefaultGCGrace, "after rooting, wait at most this long for a garbage collection in progress, which may have missed the new roots (0: do not wait; safe only where GC never runs while sandboxes start)")
	fs.BoolVarP(&quiet, "quiet", "q", false, "print only errors")
	fs.BoolVarP(&so.verbose, "verbose", "v", false, "print the daemon's log and every step")
	fs.StringVar(&report, "report", "", "write a JSON report (paths, bytes, durations, retries, outcome) to FILE")
	fs.Usage = func() {
		fmt.Fprint(e.stderr, realiseUsage+fs.FlagUsages()+"\n"+exitCodesHelp)
	}
	if err := fs.Parse(args); err != nil {
		return parseFailed(e, "nix-init", err)
	}
	roots, err := parseRoots(fs.Args())
	if err != nil {
		fmt.Fprintf(e.stderr, "nix-init: %v\n\n", err)
		fs.Usage()
		return exitUsage
	}
	log := &logger{w: e.stderr}
	logf := log.printf
	if quiet {
		logf = func(string, ...any) {}
	}
	st, err := so.resolve(e)
	if err != nil {
		return fail(e, err)
	}
	if so.verbose {
		logf("store %s (%s mode), substituters: %s", st.location, st.location.Mode, strings.Join(st.substituters, " "))
	}
	sub, err := so.substituter(st)
	if err != nil {
		return fail(e, err)
	}
	cfg := realise.Config{
		Connect:      func(ctx context.Context) (*store.Conn, error) { return so.connect(ctx, st) },
		Substituter:  sub,
		GCGrace:      gcGrace(gcWait),
		Substituters: st.substituters,
		GCRootDir:    so.gcRootDir,
		Timeout:      timeout,
		Log:          logf,
		Verbose:      so.verbose,
	}
	rep, err := realise.Realise(ctx, cfg, roots)
	rep.PeakRSSKiB = peakRSS()
	if report != "" {
		if werr := writeReport(report, rep); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		var stopped stoppedError
		if errors.As(context.Cause(ctx), &stopped) {
			// Not a failure of the run: say where it was (main exits 128+N).
			log.printf("%s in the middle of: %v", stopped, err)
			return exitPermanent
		}
		if isGaveUp(err) {
			err = fmt.Errorf("%w (is the daemon running and are the caches reachable? --timeout allows more time)", err)
		}
		return fail(e, err)
	}
	if len(rep.Substituted) > 0 || so.verbose {
		logf("%s in %s: fetched %s (%s) in %.2fs, %s",
			human.Count(int64(len(rep.Roots)), "root", ""), so.gcRootDir, human.Count(int64(len(rep.Substituted)), "path", ""),
			human.Bytes(rep.DownloadBytes), rep.Seconds, human.Count(int64(rep.Retries), "retry", "retries"))
	}
	return exitOK
}

// parseRoots reads [NAME=]STOREPATH arguments. A name cannot contain '/', so
// the first "=/" ends it even when the name itself holds '='.
func parseRoots(args []string) ([]realise.Root, error) {
	if len(args) == 0 {
		return nil, usageError{"no store paths given"}
	}
	var roots []realise.Root
	for _, a := range args {
		var r realise.Root
		if i := strings.Index(a, "=/"); i >= 0 && !strings.HasPrefix(a, "/") {
			r = realise.Root{Name: a[:i], Path: a[i+1:]}
		} else {
			r = realise.Root{Path: a}
		}
		r.Path = strings.TrimRight(r.Path, "/")
		if err := store.ValidatePath(r.Path); err != nil {
			return nil, usageError{fmt.Sprintf("argument %q: %v", a, err)}
		}
		if r.Name == "" {
			r.Name = r.Path[strings.LastIndex(r.Path, "/")+1:]
		}
		roots = append(roots, r)
	}
	return roots, nil
}

func writeReport(file string, rep *realise.Report) error {
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("write report %s: %w", file, err)
	}
	if err := os.WriteFile(file, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// peakRSS is this process's own peak resident set (VmHWM), in KiB. Unlike
// getrusage it does not count what the parent had before exec.
func peakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kib int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kib)
			return kib
		}
	}
	return 0
}

// gcGrace turns --gc-wait into realise's GCGrace, where 0 means the default.
func gcGrace(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}
