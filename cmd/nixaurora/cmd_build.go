package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/nix-aurora/nix-aurora/compile"
)

type buildOptions struct {
	expr    exprOptions
	check   checkOptions
	outLink string
	print   bool
}

func init() {
	var opts buildOptions
	register(&command{
		name:  "build",
		usage: "[FILE|DIR]",
		summary: "Build a job expression with nix-build, validate the Aurora JSON it yields as 'validate'\n" +
			"does (client and, unless --client-only, scheduler), and print the JSON's store path\n" +
			"(FILE defaults to ./default.nix). A cron job is named on stderr with the command that takes it.",
		flags: func(fs *pflag.FlagSet) {
			opts.expr.addFlags(fs)
			opts.check.addFlags(fs)
			fs.StringVarP(&opts.outLink, "out-link", "o", "", "leave a symlink (a GC root) to the JSON at this path")
			fs.BoolVar(&opts.print, "print", false, "print the JSON itself, indented, instead of its store path")
		},
		run: func(ctx context.Context, e *env, args []string) error { return runBuild(ctx, e, opts, args) },
	})
}

func runBuild(ctx context.Context, e *env, opts buildOptions, args []string) error {
	file := "."
	switch len(args) {
	case 0:
	case 1:
		file = args[0]
	default:
		return usagef("build takes one FILE or DIR, got %d", len(args))
	}
	nixArgs, err := opts.expr.nixArgs()
	if err != nil {
		return err
	}
	outs, err := compile.Build(ctx, compile.Options{
		File:      file,
		Attr:      opts.expr.attr,
		OutLink:   opts.outLink,
		Args:      nixArgs,
		Progress:  e.stderr,
		Scheduler: !opts.check.clientOnly,
	})
	if err != nil {
		return explain(err)
	}
	for _, out := range outs {
		// stderr: stdout stays the store paths (or JSON) alone, for scripts.
		printWarnings(e, out.StorePath, out.Warnings)
		if note := cronNote(out.Jobs, out.StorePath); note != "" {
			fmt.Fprintf(e.stderr, "%s: ok%s\n", out.StorePath, note)
		}
		if !opts.print {
			fmt.Fprintln(e.stdout, out.StorePath)
			continue
		}
		var buf bytes.Buffer
		if err := json.Indent(&buf, bytes.TrimSpace(out.JSON), "", "  "); err != nil {
			return fmt.Errorf("indent %s: %w", out.StorePath, err)
		}
		buf.WriteByte('\n')
		if _, err := e.stdout.Write(buf.Bytes()); err != nil {
			return err
		}
	}
	return nil
}
