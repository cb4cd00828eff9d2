package main

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"

	"github.com/spf13/pflag"

	"github.com/nix-aurora/nix-aurora/aurora"
	"github.com/nix-aurora/nix-aurora/internal/human"
	"github.com/nix-aurora/nix-aurora/jobdiff"
)

type diffOptions struct {
	expr      exprOptions // for both sides
	noClosure bool
}

func init() {
	var opts diffOptions
	register(&command{
		name:  "diff",
		usage: "OLD NEW",
		summary: "Show what changed between two versions of a job (JSON files or job expressions):\n" +
			"settings, processes, and the store paths of each changed cmdline and closure, by name.",
		flags: func(fs *pflag.FlagSet) {
			opts.expr.addFlags(fs)
			fs.BoolVar(&opts.noClosure, "no-closure", false, "compare cmdlines only, not the closures of the processes' roots")
		},
		run: func(ctx context.Context, e *env, args []string) error { return runDiff(ctx, e, opts, args) },
	})
}

func runDiff(ctx context.Context, e *env, opts diffOptions, args []string) error {
	if len(args) != 2 {
		return usagef("diff takes OLD and NEW, got %s", human.Count(int64(len(args)), "argument", ""))
	}
	if _, err := opts.expr.nixArgs(); err != nil {
		return err
	}
	var sides [2][]aurora.Job
	for i, arg := range args {
		var err error
		// Unvalidated: a diff may well show why a version does not pass.
		if sides[i], err = loadJobs(ctx, e, arg, opts.expr, false); err != nil {
			return err
		}
	}
	var closure jobdiff.Closure
	if !opts.noClosure {
		closure = localClosure
	}
	printDiff(e.stdout, jobdiff.Compare(sides[0], sides[1], closure))
	return nil
}

// localClosure asks the local store for a root's closure; a root that was
// never built here has none, and only its cmdline is compared.
func localClosure(path string) ([]string, error) {
	out, err := exec.Command("nix-store", "-qR", path).Output()
	if err != nil {
		return nil, fmt.Errorf("closure of %s: %w", path, err)
	}
	return strings.Fields(string(out)), nil
}

func printDiff(w io.Writer, changes []jobdiff.JobChange) {
	if len(changes) == 0 {
		fmt.Fprintln(w, "no changes")
		return
	}
	for _, j := range changes {
		switch {
		case j.Added:
			fmt.Fprintf(w, "job %s: added\n", j.Key)
			continue
		case j.Removed:
			fmt.Fprintf(w, "job %s: removed\n", j.Key)
			continue
		}
		fmt.Fprintf(w, "job %s:\n", j.Key)
		for _, f := range j.Fields {
			fmt.Fprintf(w, "  %s\n", f)
		}
		for _, p := range j.Processes {
			switch {
			case p.Added:
				fmt.Fprintf(w, "  process %s: added\n", p.Name)
				continue
			case p.Removed:
				fmt.Fprintf(w, "  process %s: removed\n", p.Name)
				continue
			}
			fmt.Fprintf(w, "  process %s:\n", p.Name)
			for _, f := range p.Fields {
				fmt.Fprintf(w, "    %s\n", f)
			}
			if p.CmdlineText {
				fmt.Fprintf(w, "    cmdline text changed\n")
			}
			printPaths(w, "cmdline", p.Cmdline)
			printPaths(w, "closure", p.Closure)
		}
	}
}

func printPaths(w io.Writer, where string, changes []jobdiff.PathChange) {
	if len(changes) == 0 {
		return
	}
	fmt.Fprintf(w, "    store paths in the %s:\n", where)
	for _, c := range changes {
		fmt.Fprintf(w, "      %s\n", c)
	}
}
