// Package compile turns a job expression into Aurora job JSON by running the
// real nix-build, then checks the result with Aurora's rules: its client's,
// and on request its scheduler's.
//
// It never evaluates Nix itself and never edits the JSON that Nix produced:
// what it returns is exactly what `aurora job create --read-json` will read.
package compile

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"

	"github.com/nix-aurora/nix-aurora/aurora"
)

// Options says which expression to build and where Nix's output goes.
type Options struct {
	// File is a .nix file or a directory holding default.nix.
	File string
	// Attr selects an attribute of the expression (nix-build -A).
	Attr string
	// OutLink, when set, is the symlink nix-build creates to the result;
	// otherwise no GC root is left behind.
	OutLink string
	// Args are extra arguments for nix-build (e.g. --arg pkgs ...).
	Args []string
	// Progress receives nix-build's own progress (its stderr).
	Progress io.Writer
	// NixBuild is the program to run; empty means nix-build from PATH.
	NixBuild string
	// Scheduler adds the rules of Aurora's scheduler (at its default flags)
	// to the client's, for files the client accepts.
	Scheduler bool
}

// Output is one built job file.
type Output struct {
	// StorePath is the store path of the JSON file.
	StorePath string
	// JSON is the file's content.
	JSON []byte
	// Jobs are the jobs the file holds, as Aurora's client loads them.
	Jobs []aurora.Job
	// Warnings are what Aurora accepts but may not be meant (a coerced
	// value, a duplicate process name...): see aurora.Document.Warnings.
	Warnings []aurora.Problem
}

// Error is a failure of Nix to build the expression. It names the file and
// attribute so that a user running several builds knows which one failed.
type Error struct {
	File, Attr string
	// Log is the tail of nix-build's stderr, where Nix explains the failure.
	Log string
	// Shown says that Log already went to Options.Progress as Nix wrote
	// it: the message then points there instead of repeating it, so that
	// a terminal or a task's log holds Nix's error once, where Nix put it.
	Shown bool
	Err   error
}

func (e *Error) Error() string {
	target := e.File
	if e.Attr != "" {
		target += " (attribute " + e.Attr + ")"
	}
	msg := "nix-build " + target + ": " + e.Err.Error()
	switch {
	case e.Log != "" && e.Shown:
		msg += " (Nix's error above)"
	case e.Log != "":
		msg += "\n" + e.Log
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Build runs nix-build on the expression and validates every JSON file it
// produced. A validation failure is returned together with the outputs, so a
// caller can still show what was built.
func Build(ctx context.Context, opts Options) ([]Output, error) {
	paths, err := nixBuild(ctx, opts)
	if err != nil {
		return nil, err
	}
	var outs []Output
	var problems []error
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read job file %s built from %s: %w", p, opts.File, err)
		}
		out := Output{StorePath: p, JSON: data}
		validate := aurora.ValidateDocument
		if opts.Scheduler {
			validate = aurora.ValidateForScheduler
		}
		doc, err := validate(data)
		if err != nil {
			problems = append(problems, fmt.Errorf("validate %s (built from %s): %w", p, opts.File, err))
		}
		if doc != nil {
			out.Jobs = doc.Jobs
			out.Warnings = doc.Warnings()
		}
		outs = append(outs, out)
	}
	return outs, errors.Join(problems...)
}

// logTail keeps the end of nix-build's stderr for error messages while the
// whole stream goes to the user's terminal.
type logTail struct {
	mu    sync.Mutex
	lines []string
}

const tailLines = 20

func (l *logTail) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	if len(l.lines) > tailLines {
		l.lines = l.lines[len(l.lines)-tailLines:]
	}
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func nixBuild(ctx context.Context, opts Options) ([]string, error) {
	prog := opts.NixBuild
	if prog == "" {
		prog = "nix-build"
	}
	args := []string{opts.File}
	if opts.Attr != "" {
		args = append(args, "-A", opts.Attr)
	}
	if opts.OutLink != "" {
		args = append(args, "--out-link", opts.OutLink)
	} else {
		args = append(args, "--no-out-link")
	}
	args = append(args, opts.Args...)

	cmd := exec.CommandContext(ctx, prog, args...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, &Error{File: opts.File, Attr: opts.Attr, Err: err}
	}
	if err := cmd.Start(); err != nil {
		return nil, &Error{File: opts.File, Attr: opts.Attr, Err: err}
	}
	var tail logTail
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		tail.add(line)
		fmt.Fprintln(progress, line)
	}
	if err := cmd.Wait(); err != nil {
		return nil, &Error{File: opts.File, Attr: opts.Attr, Log: tail.String(), Shown: opts.Progress != nil, Err: err}
	}
	var paths []string
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			paths = append(paths, line)
		}
	}
	if len(paths) == 0 {
		return nil, &Error{File: opts.File, Attr: opts.Attr, Log: tail.String(), Shown: opts.Progress != nil, Err: errors.New("produced no output")}
	}
	return paths, nil
}
