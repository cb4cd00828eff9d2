package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"

	"github.com/nix-aurora/nix-aurora/aurora"
	"github.com/nix-aurora/nix-aurora/nixgen"
)

type importOptions struct {
	out     string
	force   bool
	libPath string
}

func init() {
	var opts importOptions
	register(&command{
		name:  "import",
		usage: "JOB.json|-",
		summary: "Write an Aurora job JSON (from 'aurora job inspect --write-json', or a {\"jobs\": [...]} document)\n" +
			"as a Nix expression against the job library: constructors by name, only what differs from\n" +
			"Aurora's defaults, sizes with units, order constraints with 'order'. The file takes\n" +
			"{ aurora ? import LIBRARY, nixInit ? { } }; building it gives back the job, plus the init\n" +
			"processes the library adds (init processes in the input are dropped, as the library adds them).",
		flags: func(fs *pflag.FlagSet) {
			fs.StringVarP(&opts.out, "output", "o", "", "write the expression to FILE instead of stdout")
			fs.BoolVar(&opts.force, "force", false, "overwrite the -o FILE if it exists")
			fs.StringVar(&opts.libPath, "library", nixgen.DefaultLibrary,
				"the job library's path as the generated file imports it: relative to that file, absolute, or <NAME/PATH> (NIX_PATH)")
		},
		run: func(ctx context.Context, e *env, args []string) error { return runImport(ctx, e, opts, args) },
	})
}

func runImport(_ context.Context, e *env, opts importOptions, args []string) error {
	if len(args) != 1 {
		return usagef("import takes one JOB.json (or - for stdin), got %d arguments", len(args))
	}
	file := args[0]
	var data []byte
	var err error
	source := file
	if file == "-" {
		source = "stdin"
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return fmt.Errorf("import: read %s: %w", source, err)
	}
	doc, err := aurora.ParseDocument(data)
	if err != nil {
		return fmt.Errorf("import: %s: %w", source, err)
	}
	nix, err := nixgen.Generate(doc.Jobs, nixgen.Options{Library: opts.libPath, Source: source})
	if err != nil {
		return fmt.Errorf("import: %s: %w", source, err)
	}
	if opts.out == "" {
		_, err := e.stdout.Write(nix)
		return err
	}
	return writeNew(opts.out, nix, opts.force)
}

// writeNew writes data to file, refusing an existing file unless force:
// an import must not replace a hand-edited expression by accident.
func writeNew(file string, data []byte, force bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(file, flags, 0o644)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("import: %s exists: pass --force to overwrite it", file)
	}
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("import: write %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("import: write %s: %w", file, err)
	}
	return nil
}
