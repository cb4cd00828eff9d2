// Package testnix is the one place tests ask for a real Nix installation.
//
// Tests that need Nix call Require: outside CI a machine without Nix skips
// them, but in CI (CI=true) a missing Nix is a failure, never a silent skip.
package testnix

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Tools are the Nix programs the test suite drives.
var Tools = []string{"nix-build", "nix-instantiate", "nix-store", "nix-daemon", "nix"}

// Require fails (in CI) or skips (elsewhere) the test when a Nix tool is missing.
func Require(t testing.TB) {
	t.Helper()
	for _, tool := range Tools {
		if _, err := exec.LookPath(tool); err != nil {
			if InCI() {
				t.Fatalf("%s not found on PATH: CI must install Nix (apt-get install -y nix-bin): %v", tool, err)
			}
			t.Skipf("%s not found on PATH; install Nix to run this test", tool)
		}
	}
}

// InCI reports whether the tests run in CI, where nothing may be skipped for
// want of a tool.
func InCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "0" && v != "false"
}

// RequireRoot fails (in CI) or skips the test unless it runs as root, which
// tests that switch users or bind-mount a store need.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		if InCI() {
			t.Fatalf("this test needs root, and CI runs as root")
		}
		t.Skip("this test needs root")
	}
}

// The Nix under test, asked once per test binary: every test of a run sees
// the same Nix.
var (
	versionOnce sync.Once
	version     string
	versionErr  error

	protocolOnce sync.Once
	protocol     int
	protocolErr  error
)

// Version returns the version of the Nix under test ("2.8.0", "2.34.8"), as
// nix-store --version prints it, so that tests expect what this Nix says
// instead of one release's number.
func Version(t testing.TB) string {
	t.Helper()
	Require(t)
	versionOnce.Do(func() { version, versionErr = readVersion() })
	if versionErr != nil {
		t.Fatal(versionErr)
	}
	return version
}

func readVersion() (string, error) {
	out, err := exec.Command("nix-store", "--version").Output()
	if err != nil {
		return "", fmt.Errorf("nix-store --version: %w", err)
	}
	// "nix-store (Nix) 2.8.0"; Lix says "nix-store (Lix, like Nix) 2.91.1".
	f := strings.Fields(strings.TrimSpace(string(out)))
	if len(f) == 0 || !strings.Contains(string(out), "Nix") || !regexp.MustCompile(`^[0-9]+\.[0-9]+`).MatchString(f[len(f)-1]) {
		return "", fmt.Errorf("nix-store --version: cannot read a version from %q", out)
	}
	return f[len(f)-1], nil
}

// AtLeast reports whether the Nix under test is at least major.minor, for
// the few tests that expect what a Nix release changed.
func AtLeast(t testing.TB, major, minor int) bool {
	t.Helper()
	v := Version(t)
	var ma, mi int
	if _, err := fmt.Sscanf(v, "%d.%d", &ma, &mi); err != nil {
		t.Fatalf("Nix version %q: %v", v, err)
	}
	return ma > major || ma == major && mi >= minor
}

// DaemonProtocol returns the worker protocol version the Nix under test's
// daemon advertises in its handshake (0x122 is 1.34, Nix 2.8's; 2.26 and
// 2.34 advertise 1.38): a client speaking c negotiates min(c, this). It is
// read from a real handshake with nix-daemon --stdio on the local store.
func DaemonProtocol(t testing.TB) int {
	t.Helper()
	Require(t)
	protocolOnce.Do(func() { protocol, protocolErr = readProtocol() })
	if protocolErr != nil {
		t.Fatal(protocolErr)
	}
	return protocol
}

func readProtocol() (int, error) {
	const magic1, magic2 = 0x6e697863, 0x6478696f
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nix-daemon", "--stdio")
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "NIX_REMOTE=") })
	in, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("nix-daemon --stdio: %w", err)
	}
	defer cmd.Wait()
	defer in.Close()
	if err := binary.Write(in, binary.LittleEndian, uint64(magic1)); err != nil {
		return 0, fmt.Errorf("nix-daemon --stdio: writing the handshake: %w", err)
	}
	var reply [2]uint64
	if err := binary.Read(out, binary.LittleEndian, &reply); err != nil {
		return 0, fmt.Errorf("nix-daemon --stdio: reading the handshake: %w (stderr: %s)", err, stderr.String())
	}
	if reply[0] != magic2 {
		return 0, fmt.Errorf("nix-daemon --stdio: magic %#x, want %#x", reply[0], uint64(magic2))
	}
	return int(reply[1]), nil
}

// What every Nix in the matrix (2.8, 2.26, 2.34) says, for tests that check
// a real Nix's message.
var (
	// SignatureRefused matches a daemon refusing a path for its
	// signatures: 2.8 says "lacks a valid signature", 2.12 and later
	// "lacks a signature by a trusted key".
	SignatureRefused = regexp.MustCompile(`lacks a (valid signature|signature by a trusted key)`)
	// CannotConnect matches libcurl failing to connect, as Nix reports it:
	// libcurl 7 says "Couldn't connect to server", libcurl 8 "Could not
	// connect to server".
	CannotConnect = regexp.MustCompile(`(Couldn't|Could not) connect to server`)
)
