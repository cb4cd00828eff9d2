package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	nixInit   string
	buildErr  error
)

// nixInitBinary builds the static nix-init as it ships
// (scripts/build-nix-init) into a directory every user can read.
func nixInitBinary(b testing.TB) string {
	b.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bench-nix-init-")
		if err != nil {
			buildErr = err
			return
		}
		os.Chmod(dir, 0o755)
		nixInit = filepath.Join(dir, "nix-init")
		_, file, _, _ := runtime.Caller(0)
		cmd := exec.Command("bash", filepath.Join(filepath.Dir(file), "..", "scripts", "build-nix-init"), nixInit)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = &exec.ExitError{Stderr: out}
		}
	})
	if buildErr != nil {
		b.Fatalf("build nix-init: %v", buildErr)
	}
	return nixInit
}

// connFloorBinary builds bench/connfloor, static (CGO_ENABLED=0), into a
// directory every user can read.
var connFloorBinary = func() func(testing.TB) string {
	build := sync.OnceValues(func() (string, error) {
		dir, err := os.MkdirTemp("", "bench-connfloor-")
		if err != nil {
			return "", err
		}
		os.Chmod(dir, 0o755)
		out := filepath.Join(dir, "connfloor")
		_, file, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./connfloor")
		cmd.Dir = filepath.Dir(file)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			return "", &exec.ExitError{Stderr: msg}
		}
		return out, nil
	})
	return func(b testing.TB) string {
		b.Helper()
		out, err := build()
		if err != nil {
			b.Fatalf("build connfloor: %v", err)
		}
		return out
	}
}()

// sample is one timed run of a command.
type sample struct {
	wall   time.Duration
	maxRSS int64 // KiB, of the process and the children it waited for
}

// timed runs cmd and measures its wall time and peak RSS.
func timed(b testing.TB, cmd *exec.Cmd) sample {
	b.Helper()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	wall := time.Since(start)
	if err != nil {
		b.Fatalf("%s: %v\n%s", cmd.Args, err, out)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return sample{wall: wall, maxRSS: ru.Maxrss}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// TestMain removes the nix-init binary built for the run.
func TestMain(m *testing.M) {
	code := m.Run()
	if nixInit != "" {
		os.RemoveAll(filepath.Dir(nixInit))
	}
	os.Exit(code)
}
