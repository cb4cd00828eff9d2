package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/nix-aurora/nix-aurora/bindings"
)

const renderUsage = `Usage: nix-init render --template FILE --out NAME --separator SEP [--binding NAME]... < VALUES

Writes the template FILE with its {{bindings}} expanded to NAME in the
current directory (the sandbox) and prints NAME's absolute path. VALUES on
stdin hold one value per --binding, in order, each followed by a line SEP.
The Nix library's templateFile generates this call; Thermos fills in the
values, which may contain anything, newlines included.

Flags:
`

func runRender(stdin io.Reader, e *env, args []string) int {
	var template, out, sep string
	var names []string
	fs := pflag.NewFlagSet("nix-init render", pflag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.StringVar(&template, "template", "", "the template file (a store path)")
	fs.StringVar(&out, "out", "", "the file to write, in the current directory")
	fs.StringVar(&sep, "separator", "", "the line that ends each value on stdin")
	fs.StringArrayVar(&names, "binding", nil, "a binding the template uses, in the order of the values (repeatable)")
	fs.Usage = func() { fmt.Fprint(e.stderr, renderUsage+fs.FlagUsages()) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if template == "" || out == "" || sep == "" || fs.NArg() > 0 || out != filepath.Base(out) || strings.HasPrefix(out, ".") {
		fmt.Fprintf(e.stderr, "nix-init render: need --template, --separator and --out NAME (a plain file name), and no other arguments\n")
		return exitUsage
	}
	path, err := render(stdin, template, out, sep, names)
	if err != nil {
		return fail(e, err)
	}
	fmt.Fprintln(e.stdout, path)
	return exitOK
}

func render(stdin io.Reader, template, out, sep string, names []string) (string, error) {
	data, err := io.ReadAll(io.LimitReader(stdin, 16<<20))
	if err != nil {
		return "", fmt.Errorf("render %s: read values: %w", template, err)
	}
	values, err := bindings.ParseSections(string(data), sep, names)
	if err != nil {
		return "", fmt.Errorf("render %s: %w", template, err)
	}
	text, err := os.ReadFile(template)
	if err != nil {
		return "", fmt.Errorf("render: %w", err)
	}
	expanded, err := bindings.Expand(string(text), values, false)
	if err != nil {
		return "", fmt.Errorf("render %s: %w", template, err)
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return "", fmt.Errorf("render %s: %w", out, err)
	}
	// Written whole and renamed into place: a process restarted by Thermos
	// while another renders never reads half a file.
	tmp, err := os.CreateTemp(filepath.Dir(abs), "."+out+".tmp-")
	if err != nil {
		return "", fmt.Errorf("render %s: %w", abs, err)
	}
	if _, err := tmp.WriteString(expanded); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", fmt.Errorf("render %s: %w", abs, err)
	}
	err = tmp.Chmod(0o644)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), abs)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("render %s: %w", abs, err)
	}
	return abs, nil
}
