package store

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestParseURI(t *testing.T) {
	t.Setenv("NIX_DAEMON_SOCKET_PATH", "")
	for _, tc := range []struct {
		in   string
		want Location
		str  string
	}{
		{"", Location{Mode: Auto}, "auto"},
		{"auto", Location{Mode: Auto}, "auto"},
		{"daemon", Location{Mode: Daemon, Socket: "/nix/var/nix/daemon-socket/socket"}, "unix:///nix/var/nix/daemon-socket/socket"},
		{"unix://", Location{Mode: Daemon, Socket: "/nix/var/nix/daemon-socket/socket"}, "unix:///nix/var/nix/daemon-socket/socket"},
		{"unix:///run/nix/sock", Location{Mode: Daemon, Socket: "/run/nix/sock"}, "unix:///run/nix/sock"},
		{"local", Location{Mode: Local}, "local"},
		{"local?root=/srv/node", Location{Mode: Local, Store: "local?root=/srv/node", Root: "/srv/node"}, "local?root=/srv/node"},
		{"/srv/node/", Location{Mode: Local, Store: "/srv/node", Root: "/srv/node"}, "/srv/node"},
	} {
		got, err := ParseURI(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseURI(%q) = %#v, %v; want %#v", tc.in, got, err, tc.want)
		}
		if got.String() != tc.str {
			t.Errorf("ParseURI(%q).String() = %q, want %q", tc.in, got.String(), tc.str)
		}
	}
	for _, in := range []string{"unix://relative", "unix:///s?x=1", "local?root=rel", "rel/dir", "ssh-ng://host", "file:///cache", "https://cache.nixos.org", "bogus"} {
		if _, err := ParseURI(in); err == nil {
			t.Errorf("ParseURI(%q): no error", in)
		}
	}
	t.Setenv("NIX_DAEMON_SOCKET_PATH", "/run/custom.sock")
	if l, _ := ParseURI("daemon"); l.Socket != "/run/custom.sock" {
		t.Errorf("NIX_DAEMON_SOCKET_PATH ignored: %#v", l)
	}
}

func TestResolve(t *testing.T) {
	root := t.TempDir()
	state := filepath.Join(root, "nix/var/nix")
	sock := filepath.Join(root, "socket")

	// No state dir, no socket: an error naming both.
	_, err := Resolve(Location{Mode: Auto, Root: root, Socket: sock})
	if err == nil || !strings.Contains(err.Error(), state) || !strings.Contains(err.Error(), sock) {
		t.Fatalf("Resolve = %v, want an error naming %s and %s", err, state, sock)
	}

	// A socket: the daemon.
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got, err := Resolve(Location{Mode: Auto, Root: root, Socket: sock})
	if err != nil || got != (Location{Mode: Daemon, Socket: sock}) {
		t.Fatalf("Resolve = %#v, %v; want the daemon", got, err)
	}

	// A writable state dir wins.
	if err := os.MkdirAll(filepath.Join(state, "db"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err = Resolve(Location{Mode: Auto, Root: root, Socket: sock})
	if want := (Location{Mode: Local, Store: "local?root=" + root, Root: root}); err != nil || got != want {
		t.Fatalf("Resolve = %#v, %v; want %#v", got, err, want)
	}

	// Explicit locations pass through.
	in := Location{Mode: Daemon, Socket: "/x"}
	if got, err := Resolve(in); err != nil || got != in {
		t.Errorf("Resolve(%#v) = %#v, %v", in, got, err)
	}
}

func TestResolveUnwritableStateDir(t *testing.T) {
	root := os.Getenv("NXA_ROOT")
	if root == "" {
		root = sharedDir(t)
		if err := os.MkdirAll(filepath.Join(root, "nix/var/nix/db"), 0o755); err != nil {
			t.Fatal(err)
		}
		if os.Geteuid() == 0 {
			// access(2) lets root write anywhere: ask as nobody.
			runAsNobody(t, "TestResolveUnwritableStateDir", "NXA_ROOT="+root)
			return
		}
		if err := os.Chmod(filepath.Join(root, "nix/var/nix"), 0o555); err != nil {
			t.Fatal(err)
		}
	}
	_, err := Resolve(Location{Mode: Auto, Root: root, Socket: filepath.Join(root, "nosocket")})
	if err == nil || !strings.Contains(err.Error(), "not writable") || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("Resolve = %v, want a refusal of the read-only state dir", err)
	}
}

func TestIsConnectionError(t *testing.T) {
	yes := []error{io.EOF, io.ErrUnexpectedEOF, ErrBroken, syscall.ECONNRESET, syscall.EPIPE, syscall.ECONNREFUSED,
		&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ENOENT)},
		&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EAGAIN)}}
	no := []error{nil, ErrNotValid, &DaemonError{Message: "x"}, context.Canceled, errors.New("other"),
		&os.PathError{Op: "open", Err: syscall.ENOENT}}
	for _, e := range yes {
		if !IsConnectionError(fmtWrap(e)) {
			t.Errorf("IsConnectionError(%v) = false", e)
		}
	}
	for _, e := range no {
		if IsConnectionError(fmtWrap(e)) {
			t.Errorf("IsConnectionError(%v) = true", e)
		}
	}
}

func fmtWrap(err error) error {
	if err == nil {
		return nil
	}
	c := &Conn{loc: Location{Mode: Local}}
	return c.opError("IsValidPath", pathA, err)
}
