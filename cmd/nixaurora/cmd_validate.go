package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/nix-aurora/nix-aurora/aurora"
)

// checkOptions choose the rules validate and build apply.
type checkOptions struct {
	clientOnly bool
}

func (o *checkOptions) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.clientOnly, "client-only", false,
		"check only the rules of Aurora's client, not those of its scheduler (for a cluster whose scheduler flags differ from the defaults)")
}

func init() {
	var opts checkOptions
	register(&command{
		name:  "validate",
		usage: "FILE.json...",
		summary: "Check Aurora job JSON files (built or hand-written) with the rules of Aurora's client and,\n" +
			"unless --client-only, of its scheduler at default flags: what passes is what\n" +
			"'aurora job create --read-json' accepts, or for a cron job 'aurora cron schedule --read-json'.",
		flags: opts.addFlags,
		run:   func(ctx context.Context, e *env, args []string) error { return runValidate(ctx, e, opts, args) },
	})
}

func runValidate(_ context.Context, e *env, opts checkOptions, args []string) error {
	if len(args) == 0 {
		return usagef("validate needs at least one FILE.json")
	}
	var failed []error
	for _, file := range args {
		doc, err := validateFile(file, opts)
		if err != nil {
			failed = append(failed, err)
			continue
		}
		printWarnings(e, file, doc.Warnings())
		fmt.Fprintf(e.stdout, "%s: ok%s\n", file, cronNote(doc.Jobs, file))
	}
	return errors.Join(failed...)
}

func validateFile(file string, opts checkOptions) (*aurora.Document, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read job file: %w", err)
	}
	validate := aurora.ValidateForScheduler
	if opts.clientOnly {
		validate = aurora.ValidateDocument
	}
	doc, err := validate(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, explain(err))
	}
	return doc, nil
}

// printWarnings tells on stderr what Aurora accepts in file but the author
// may not mean: it never fails the file.
func printWarnings(e *env, file string, ws []aurora.Problem) {
	for _, w := range ws {
		fmt.Fprintf(e.stderr, "%s: warning: %s\n", file, w)
	}
}

// schedulerNote tells a reader of a scheduler's rejection what was checked,
// so that a cluster with other flags is not taken for the one checked.
const schedulerNote = "(the scheduler's rules at its default flags: --client-only skips them)"

// explain adds schedulerNote to a rejection by the scheduler.
func explain(err error) error {
	if errors.Is(err, aurora.ErrScheduler) {
		return fmt.Errorf("%w\n\t%s", err, schedulerNote)
	}
	return err
}

// createCommand is the Aurora command that takes job from file: a cron job
// is refused by 'aurora job create' (exit 4) and only taken by 'aurora cron
// schedule', which refuses any other job.
func createCommand(job aurora.Job, file string) string {
	verb := "job create"
	if job.IsCron() {
		verb = "cron schedule"
	}
	return fmt.Sprintf("aurora %s %s %s --read-json", verb, job.Key(), file)
}

// cronNote is what the "ok" line of file adds when some of its jobs are cron
// jobs, "" when none is.
func cronNote(jobs []aurora.Job, file string) string {
	var notes []string
	for i, job := range jobs {
		if !job.IsCron() {
			continue
		}
		note := fmt.Sprintf("a cron job: schedule it with '%s', not 'aurora job create'", createCommand(job, file))
		if len(jobs) > 1 {
			note = fmt.Sprintf("jobs[%d] is %s", i, note)
		}
		notes = append(notes, note)
	}
	if len(notes) == 0 {
		return ""
	}
	return " (" + strings.Join(notes, "; ") + ")"
}
