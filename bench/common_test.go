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

// builtDirs are sharedBuild's directories, removed by TestMain.
var builtDirs struct {
	sync.Mutex
	list []string
}

// sharedBuild builds a program once per test binary into a directory
// every user can read (daemon-mode runs are nobody's): command makes the
// build of the file out, run in the bench directory.
func sharedBuild(name string, command func(out string) *exec.Cmd) func(testing.TB) string {
	build := sync.OnceValues(func() (string, error) {
		dir, err := os.MkdirTemp("", "bench-"+name+"-")
		if err != nil {
			return "", err
		}
		builtDirs.Lock()
		builtDirs.list = append(builtDirs.list, dir)
		builtDirs.Unlock()
		os.Chmod(dir, 0o755)
		out := filepath.Join(dir, name)
		_, file, _, _ := runtime.Caller(0)
		cmd := command(out)
		cmd.Dir = filepath.Dir(file)
		if msg, err := cmd.CombinedOutput(); err != nil {
			return "", &exec.ExitError{Stderr: msg}
		}
		return out, nil
	})
	return func(b testing.TB) string {
		b.Helper()
		out, err := build()
		if err != nil {
			b.Fatalf("build %s: %v", name, err)
		}
		return out
	}
}

// nixInitBinary is the static nix-init as it ships (scripts/build-nix-init).
var nixInitBinary = sharedBuild("nix-init", func(out string) *exec.Cmd {
	return exec.Command("bash", filepath.Join("..", "scripts", "build-nix-init"), out)
})

// connFloorBinary is bench/connfloor, static (CGO_ENABLED=0).
var connFloorBinary = sharedBuild("connfloor", func(out string) *exec.Cmd {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./connfloor")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	return cmd
})

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

// TestMain removes the programs built for the run.
func TestMain(m *testing.M) {
	code := m.Run()
	builtDirs.Lock()
	for _, dir := range builtDirs.list {
		os.RemoveAll(dir)
	}
	builtDirs.Unlock()
	os.Exit(code)
}
