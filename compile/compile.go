// Package compile turns a job expression into Aurora job JSON by running the
// real nix-build (or, for a flake's output, nix build), then checks the
// result with Aurora's rules: its client's, and on request its scheduler's.
//
// It never evaluates Nix itself and never edits the JSON that Nix produced:
// what it returns is exactly what `aurora job create --read-json` will read.
package compile

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/nix-aurora/nix-aurora/aurora"
)

// Options says which expression to build and where Nix's output goes.
type Options struct {
	// File is a .nix file, a directory holding default.nix, or a flake
	// reference with its output (.#jobs.NAME, PATH#ATTR, github:O/R#ATTR:
	// see IsFlakeRef), which nix build builds.
	File string
	// Attr selects an attribute of the expression (nix-build -A). A flake
	// reference names its output after '#' instead.
	Attr string
	// OutLink, when set, is the symlink nix-build creates to the result;
	// otherwise no GC root is left behind.
	OutLink string
	// Args are extra arguments for nix-build (e.g. --arg pkgs ...). A
	// flake's outputs take no arguments.
	Args []string
	// Progress receives nix-build's own progress (its stderr).
	Progress io.Writer
	// NixBuild is the program to run; empty means nix-build from PATH.
	NixBuild string
	// Nix is the program that builds flake references; empty means nix
	// from PATH.
	Nix string
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
	// Flake says that File is a flake reference, built with nix build.
	Flake bool
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
	prog := "nix-build "
	if e.Flake {
		prog = "nix build "
	}
	msg := prog + target + ": " + e.Err.Error()
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

// flakeScheme is the start of a flake URL: github:, path:, git+https:,
// flake:... (a scheme, as Nix parses flake references).
var flakeScheme = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)

// IsFlakeRef reports whether ref names a flake output, as nix build takes
// it (.#jobs.NAME, ./dir#ATTR, github:OWNER/REPO#ATTR, path:DIR), rather
// than a file or directory for nix-build: it is no existing file, and it
// holds a '#' or starts with a URL scheme. "." and "dir" stay nix-build's.
func IsFlakeRef(ref string) bool {
	if _, err := os.Lstat(ref); err == nil {
		return false
	}
	return strings.Contains(ref, "#") || flakeScheme.MatchString(ref)
}

// FlakeFeatures are the experimental features nix build needs for flakes:
// Nix 2.8 and later have them, none enables them by default.
const FlakeFeatures = "nix-command flakes"

// command is the Nix command that builds opts: nix-build FILE, or, for a
// flake reference, nix build --json REF (Nix 2.8 has no --print-out-paths,
// which came in 2.9; --json has the output paths in every version).
func command(opts Options) (string, []string, error) {
	if !IsFlakeRef(opts.File) {
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
		return prog, append(args, opts.Args...), nil
	}
	if opts.Attr != "" || len(opts.Args) > 0 {
		return "", nil, fmt.Errorf("%s is a flake reference: -A, --arg and --argstr are for nix-build's expressions; name the flake's output after '#' (FLAKE#jobs.NAME)", opts.File)
	}
	prog := opts.Nix
	if prog == "" {
		prog = "nix"
	}
	args := []string{"--extra-experimental-features", FlakeFeatures, "build", "--json"}
	if opts.OutLink != "" {
		args = append(args, "--out-link", opts.OutLink)
	} else {
		args = append(args, "--no-link")
	}
	return prog, append(args, opts.File), nil
}

// builtPaths reads nix build --json: one entry per installable, an object
// with the derivation's "outputs" (name -> path), or, for a store path,
// {"path": P} (Nix 2.8 to 2.2x) or the path as a string (newer Nix).
func builtPaths(out []byte) ([]string, error) {
	var entries []json.RawMessage
	if err := json.Unmarshal(out, &entries); err != nil {
		return nil, fmt.Errorf("read nix build --json: %w", err)
	}
	var paths []string
	for _, raw := range entries {
		var p string
		if json.Unmarshal(raw, &p) == nil {
			paths = append(paths, p)
			continue
		}
		var e struct {
			Path    string            `json:"path"`
			Outputs map[string]string `json:"outputs"`
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, fmt.Errorf("read nix build --json: entry %s: %w", raw, err)
		}
		if e.Path != "" {
			paths = append(paths, e.Path)
		}
		names := make([]string, 0, len(e.Outputs))
		for name := range e.Outputs {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			paths = append(paths, e.Outputs[name])
		}
	}
	return paths, nil
}

func nixBuild(ctx context.Context, opts Options) ([]string, error) {
	flake := IsFlakeRef(opts.File)
	fail := func(log string, err error) error {
		return &Error{File: opts.File, Attr: opts.Attr, Flake: flake, Log: log, Shown: opts.Progress != nil, Err: err}
	}
	prog, args, err := command(opts)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, prog, args...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fail("", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fail("", err)
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
		return nil, fail(tail.String(), err)
	}
	var paths []string
	if flake {
		if paths, err = builtPaths(stdout.Bytes()); err != nil {
			return nil, fail(tail.String(), err)
		}
	} else {
		for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				paths = append(paths, line)
			}
		}
	}
	if len(paths) == 0 {
		return nil, fail(tail.String(), errors.New("produced no output"))
	}
	return paths, nil
}
