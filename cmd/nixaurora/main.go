// Command nixaurora is the config compiler's CLI: it builds Aurora jobs
// written in Nix, validates their JSON, and helps people inspect them.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/spf13/pflag"
)

// Exit codes, documented in the help text.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// command is one subcommand: its flags live in its own FlagSet and its work
// in run, so that each file of this package holds one subcommand.
type command struct {
	name    string
	usage   string // arguments after the command name
	summary string
	flags   func(*pflag.FlagSet)
	run     func(ctx context.Context, env *env, args []string) error
}

// env is what a command may touch of the outside world; tests substitute it.
type env struct {
	stdout, stderr io.Writer
}

// usageError marks a mistake in the command line: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

var commands = map[string]*command{}

func register(c *command) { commands[c.name] = c }

func mainUsage(w io.Writer) {
	fmt.Fprintf(w, "nixaurora: Apache Aurora jobs defined as Nix expressions\n\n")
	fmt.Fprintf(w, "Usage: nixaurora COMMAND [FLAGS] [ARGS]\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		io.WriteString(w, wrap(fmt.Sprintf("  %-10s ", n), commands[n].summary, helpWidth))
	}
	fmt.Fprintf(w, "\nRun 'nixaurora COMMAND --help' for a command's flags.\n")
	fmt.Fprintf(w, "\nExit codes: 0 success, 1 failure (build or validation), 2 usage error.\n")
}

// helpWidth is the width help text is wrapped to: a terminal's 80 columns
// would break most flag descriptions, and 100 still reads in a log viewer.
const helpWidth = 100

// wrap reflows text (its line breaks are only where its source wrapped it)
// into lines of at most width columns, the first after prefix and the
// others indented as far, so that a description stays in its column. A
// word longer than a line gets a line of its own.
func wrap(prefix, text string, width int) string {
	indent := strings.Repeat(" ", len(prefix))
	var b strings.Builder
	line := prefix
	empty := true // no word on the line yet
	for _, word := range strings.Fields(text) {
		if !empty && len(line)+1+len(word) > width {
			b.WriteString(line + "\n")
			line, empty = indent, true
		}
		if !empty {
			line += " "
		}
		line += word
		empty = false
	}
	b.WriteString(line + "\n")
	return b.String()
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, &env{stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}

// run dispatches to a subcommand and maps its error to an exit code.
func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		mainUsage(e.stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	if args[0] == "--version" {
		fmt.Fprintln(e.stdout, versionLine())
		return exitOK
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "nixaurora: unknown command %q\n\n", args[0])
		mainUsage(e.stderr)
		return exitUsage
	}
	fs := pflag.NewFlagSet("nixaurora "+c.name, pflag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.SetInterspersed(true)
	if c.flags != nil {
		c.flags(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "%s\n\n%s", strings.TrimSpace("Usage: nixaurora "+c.name+" [FLAGS] "+c.usage), wrap("", c.summary, helpWidth))
		if fs.HasAvailableFlags() {
			fmt.Fprintf(e.stderr, "\nFlags:\n%s", fs.FlagUsagesWrapped(helpWidth))
		}
		fmt.Fprintf(e.stderr, "\nExit codes: 0 success, 1 failure, 2 usage error.\n")
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	err := c.run(ctx, e, fs.Args())
	if err == nil {
		return exitOK
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(e.stderr, "nixaurora %s: %v\n", c.name, err)
		fs.Usage()
		return exitUsage
	}
	fmt.Fprintf(e.stderr, "nixaurora %s: %v\n", c.name, err)
	return exitFailure
}
