package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

const (
	defaultStateDir = "/nix/var/nix"
	defaultSocket   = defaultStateDir + "/daemon-socket/socket"
)

// Mode is how a store is reached.
type Mode int

const (
	// Auto: decide when opening, as Nix does (Resolve).
	Auto Mode = iota
	// Daemon: a nix-daemon's unix socket (multi-user Nix).
	Daemon
	// Local: a store this process may write, served by a child
	// nix-daemon --stdio (single-user Nix).
	Local
)

func (m Mode) String() string {
	switch m {
	case Daemon:
		return "daemon"
	case Local:
		return "local"
	default:
		return "auto"
	}
}

// Location is a parsed store URI.
type Location struct {
	Mode   Mode
	Socket string // Daemon: the socket's path
	// Store is the --store argument of the child nix-daemon (Local): "" for
	// the default store, else e.g. "/abs/dir" or "local?root=/abs/dir".
	Store string
	// Root is the directory a chroot store lives under (files in
	// <Root>/nix/store, state in <Root>/nix/var/nix); "" for /.
	Root string
}

// String gives the location as a store URI, e.g. "unix:///nix/var/nix/daemon-socket/socket",
// "local" or "/abs/dir".
func (l Location) String() string {
	switch l.Mode {
	case Daemon:
		return "unix://" + l.Socket
	case Local:
		if l.Store == "" {
			return "local"
		}
		return l.Store
	default:
		return "auto"
	}
}

// StateDir is the store's state directory (<Root>/nix/var/nix).
func (l Location) StateDir() string { return filepath.Join("/", l.Root, defaultStateDir) }

// DefaultSocket is the daemon socket Nix uses: $NIX_DAEMON_SOCKET_PATH, or
// /nix/var/nix/daemon-socket/socket.
func DefaultSocket() string {
	if s := os.Getenv("NIX_DAEMON_SOCKET_PATH"); s != "" {
		return s
	}
	return defaultSocket
}

// ParseURI parses a store URI as Nix's --store and NIX_REMOTE take it:
// "" or "auto"; "daemon" or "unix://" (the default socket);
// "unix:///abs/socket"; "local"; "local?root=/abs/dir"; "/abs/dir" (a
// chroot store). Other stores (ssh-ng://, binary caches) are not supported.
func ParseURI(s string) (Location, error) {
	switch s {
	case "", "auto":
		return Location{Mode: Auto}, nil
	case "daemon", "unix://":
		return Location{Mode: Daemon, Socket: DefaultSocket()}, nil
	case "local":
		return Location{Mode: Local}, nil
	}
	switch {
	case strings.HasPrefix(s, "unix://"):
		p := strings.TrimPrefix(s, "unix://")
		if strings.ContainsAny(p, "?#") {
			return Location{}, fmt.Errorf("store URI %q: parameters are not supported for daemon stores", s)
		}
		if !filepath.IsAbs(p) {
			return Location{}, fmt.Errorf("store URI %q: the socket path must be absolute", s)
		}
		return Location{Mode: Daemon, Socket: filepath.Clean(p)}, nil
	case strings.HasPrefix(s, "local?"):
		q, err := url.ParseQuery(strings.TrimPrefix(s, "local?"))
		if err != nil {
			return Location{}, fmt.Errorf("store URI %q: %v", s, err)
		}
		root := q.Get("root")
		if root != "" && !filepath.IsAbs(root) {
			return Location{}, fmt.Errorf("store URI %q: root must be an absolute path", s)
		}
		if root != "" {
			root = filepath.Clean(root)
		}
		return Location{Mode: Local, Store: s, Root: root}, nil
	case strings.HasPrefix(s, "/"):
		if strings.Contains(s, "://") || strings.ContainsAny(s, "?#") {
			break
		}
		dir := filepath.Clean(s)
		return Location{Mode: Local, Store: dir, Root: dir}, nil
	case !strings.Contains(s, "://") && strings.Contains(s, "/"):
		return Location{}, fmt.Errorf("store URI %q: a chroot store must be an absolute path", s)
	}
	return Location{}, fmt.Errorf("store URI %q is not supported: use auto, daemon, unix:///socket, local, local?root=/dir or /dir", s)
}

// Resolve decides an Auto location the way Nix does: the local store when
// its state directory (and its db directory) are writable by this process,
// else the daemon when its socket exists. Other locations are returned as
// they are.
func Resolve(loc Location) (Location, error) {
	if loc.Mode != Auto {
		return loc, nil
	}
	stateDir := loc.StateDir()
	localErr := writable(stateDir)
	if localErr == nil {
		local := Location{Mode: Local, Root: loc.Root}
		if loc.Root != "" {
			local.Store = "local?root=" + loc.Root
		}
		return local, nil
	}
	sock := loc.Socket
	if sock == "" {
		sock = DefaultSocket()
	}
	_, sockErr := os.Stat(sock)
	if sockErr == nil {
		return Location{Mode: Daemon, Socket: sock}, nil
	}
	return Location{}, fmt.Errorf("no usable Nix store: the state directory %s is not writable by uid %d (%v), and there is no daemon socket at %s (%v); install Nix, start nix-daemon, or choose a store with --store",
		stateDir, os.Getuid(), localErr, sock, sockErr)
}

// writable checks the state directory and its database directory with
// access(2), as Nix does: permissions, ACLs and read-only mounts all count.
func writable(stateDir string) error {
	if err := syscall.Access(stateDir, 0x2|0x4); err != nil { // W_OK|R_OK
		return err
	}
	// A missing db directory is fine: the store creates it.
	if err := syscall.Access(filepath.Join(stateDir, "db"), 0x2); err != nil && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("%s: %w", filepath.Join(stateDir, "db"), err)
	}
	return nil
}

// OpenOption adjusts Open.
type OpenOption func(*openConfig)

type openConfig struct {
	stdio StdioOptions
}

// WithStdio sets the program and environment of the child nix-daemon used
// for local stores (its Store is taken from the URI).
func WithStdio(o StdioOptions) OpenOption {
	return func(c *openConfig) { c.stdio = o }
}

// Open connects to the store uri names (see ParseURI). An empty uri means
// $NIX_REMOTE, or auto. Daemon stores are dialled; local ones are served by
// a child nix-daemon --stdio.
func Open(ctx context.Context, uri string, opts ...OpenOption) (*Conn, error) {
	var cfg openConfig
	for _, o := range opts {
		o(&cfg)
	}
	if uri == "" {
		uri = os.Getenv("NIX_REMOTE")
	}
	loc, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	if loc, err = Resolve(loc); err != nil {
		return nil, err
	}
	if loc.Mode == Daemon {
		return Dial(ctx, loc.Socket)
	}
	so := cfg.stdio
	so.Store = loc.Store
	return Spawn(ctx, so)
}
