package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/nix-aurora/nix-aurora/aurora"
	"github.com/nix-aurora/nix-aurora/compile"
)

// exprOptions say how to build a job expression: the flags build, run,
// diff and push share. Where they take FILE or DIR they also take a flake
// output (.#jobs.NAME, PATH#ATTR, github:OWNER/REPO#ATTR), which compile
// builds with nix build; its attribute follows '#', and it takes no -A,
// --arg or --argstr.
type exprOptions struct {
	attr    string
	args    []string // NAME=EXPR
	argstrs []string // NAME=VALUE
}

func (o *exprOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&o.attr, "attr", "A", "", "build this attribute of the job expression (a flake reference names it after '#': .#jobs.NAME)")
	fs.StringArrayVar(&o.args, "arg", nil, "NAME=EXPR: pass the Nix expression EXPR as argument NAME (nix-build --arg; repeatable)")
	fs.StringArrayVar(&o.argstrs, "argstr", nil, "NAME=VALUE: pass the string VALUE as argument NAME (nix-build --argstr; repeatable)")
}

// set reports whether any of the flags was given.
func (o exprOptions) set() bool { return o.attr != "" || len(o.args) > 0 || len(o.argstrs) > 0 }

// nixArgs turns --arg/--argstr NAME=VALUE into nix-build's two-word form.
func (o exprOptions) nixArgs() ([]string, error) {
	var out []string
	for _, set := range []struct {
		flag   string
		values []string
	}{{"--arg", o.args}, {"--argstr", o.argstrs}} {
		for _, v := range set.values {
			name, value, ok := strings.Cut(v, "=")
			if !ok || name == "" {
				return nil, usagef("%s %q: want NAME=VALUE", set.flag, v)
			}
			out = append(out, set.flag, name, value)
		}
	}
	return out, nil
}

// build runs nix-build on the expression file, its progress on stderr.
func (o exprOptions) build(ctx context.Context, e *env, file string) ([]compile.Output, error) {
	nixArgs, err := o.nixArgs()
	if err != nil {
		return nil, err
	}
	return compile.Build(ctx, compile.Options{File: file, Attr: o.attr, Args: nixArgs, Progress: e.stderr})
}

// resolve follows links: a build's out-link (./result) leads to its JSON,
// other links into the store to store paths.
func resolve(arg string) string {
	if resolved, err := filepath.EvalSymlinks(arg); err == nil {
		return resolved
	}
	return arg
}

// isJSON reports whether arg is (or links to) a job JSON file rather than
// an expression or a flake's output.
func isJSON(arg string) bool {
	return !compile.IsFlakeRef(arg) && strings.HasSuffix(resolve(arg), ".json")
}

// readJobs reads a job JSON file strictly as Aurora's client does; with
// validate, Aurora's client checks must pass too.
func readJobs(file string, validate bool) ([]aurora.Job, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	read := aurora.ParseDocument
	if validate {
		read = aurora.ValidateDocument
	}
	doc, err := read(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return doc.Jobs, nil
}

// loadJobs reads a JSON file as it is, or builds a job expression.
func loadJobs(ctx context.Context, e *env, arg string, o exprOptions, validate bool) ([]aurora.Job, error) {
	if isJSON(arg) {
		return readJobs(arg, validate)
	}
	outs, err := o.build(ctx, e, arg)
	if err != nil {
		return nil, err
	}
	var jobs []aurora.Job
	for _, out := range outs {
		jobs = append(jobs, out.Jobs...)
	}
	return jobs, nil
}
