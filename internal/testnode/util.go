package testnode

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// commandTimeout bounds every Nix command the harness runs itself.
const commandTimeout = 2 * time.Minute

// tempRoot is where the harness makes its directories: os.TempDir() when it
// is short and plain, else /tmp. Socket paths must stay under 108 bytes and
// directories must be usable in file:// URLs.
func tempRoot() string {
	d := os.TempDir()
	if len(d) > 40 || strings.ContainsAny(d, " #?&%;'\"\\$`") {
		return "/tmp"
	}
	return d
}

// shortTempDir makes a fresh directory under tempRoot() that is removed when
// the test ends (made writable first: store paths are read-only).
func shortTempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp(tempRoot(), prefix)
	if err != nil {
		t.Fatalf("testnode: making a temporary directory: %v", err)
	}
	t.Cleanup(func() {
		if err := removeTree(dir); err != nil {
			t.Errorf("testnode: removing %s: %v", dir, err)
		}
	})
	return dir
}

// removeTree removes dir after making every directory in it writable (the
// store's canonical 0555 directories would stop a non-root user).
func removeTree(dir string) error {
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// baseEnv is the test process's environment without anything that would
// point Nix at another configuration, store or home.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "NIX_") || strings.HasPrefix(k, "XDG_") || k == "HOME" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// runResult is what a finished command said.
type runResult struct {
	stdout, stderr string
	err            error
}

// run runs a command with a timeout and collects its output.
func run(env []string, dir, name string, args ...string) runResult {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", commandTimeout, err)
	}
	return runResult{out.String(), errb.String(), err}
}

// mustRun runs a command and fails the test if it fails.
func mustRun(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	r := run(env, "", name, args...)
	if r.err != nil {
		t.Fatalf("testnode: %s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), r.err, r.stdout, r.stderr)
	}
	return r.stdout
}

// lines splits output into non-empty trimmed lines.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// storeName turns s into characters valid in a store path name.
func storeName(s string, max int) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("+-._", r):
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	n := strings.Trim(b.String(), "-.")
	if len(n) > max {
		n = n[:max]
	}
	if n == "" {
		n = "x"
	}
	return n
}

// hashPart is the 32-character hash of a store path.
func hashPart(storePath string) string {
	base := filepath.Base(storePath)
	if len(base) < 32 {
		return base
	}
	return base[:32]
}
