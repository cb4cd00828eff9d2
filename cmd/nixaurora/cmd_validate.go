package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/nix-aurora/nix-aurora/aurora"
)

func init() {
	register(&command{
		name:  "validate",
		usage: "FILE.json...",
		summary: "Check Aurora job JSON files (built or hand-written) with the rules of Aurora's client,\n" +
			"so that what passes is what 'aurora job create --read-json' accepts.",
		run: runValidate,
	})
}

func runValidate(_ context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("validate needs at least one FILE.json")
	}
	var failed []error
	for _, file := range args {
		if err := validateFile(file); err != nil {
			failed = append(failed, err)
			continue
		}
		fmt.Fprintf(e.stdout, "%s: ok\n", file)
	}
	return errors.Join(failed...)
}

func validateFile(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("validate: %w", err)
	}
	if _, err := aurora.ValidateDocument(data); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}
