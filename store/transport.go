package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Dial connects to the daemon listening on socketPath ("" = DefaultSocket)
// and runs the handshake.
func Dial(ctx context.Context, socketPath string) (*Conn, error) {
	if socketPath == "" {
		socketPath = DefaultSocket()
	}
	loc := Location{Mode: Daemon, Socket: socketPath}
	nc, err := dialUnix(ctx, socketPath)
	if err != nil {
		if errors.Is(err, syscall.EACCES) {
			err = fmt.Errorf("%w (is this user allowed to use the Nix daemon? On Debian its socket is for group nix-users)", err)
		}
		return nil, fmt.Errorf("store %s: connecting: %w", loc, err)
	}
	c := newConn(loc, nc.(*net.UnixConn))
	if err := c.handshake(ctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("store %s: %w", loc, err)
	}
	return c, nil
}

// backlogWindow is how long dialUnix keeps knocking while the daemon's
// listen backlog is full.
const backlogWindow = 2 * time.Second

// dialUnix connects to a unix socket. A full listen backlog (EAGAIN: many
// sandboxes of a node starting at once; nix-daemon listens with a small
// backlog) clears in milliseconds as the daemon accepts, so it is retried
// at once with short jittered pauses rather than failing the attempt.
func dialUnix(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	deadline := time.Now().Add(backlogWindow)
	for pause := time.Millisecond; ; pause = min(2*pause, 50*time.Millisecond) {
		nc, err := d.DialContext(ctx, "unix", path)
		if err == nil || !errors.Is(err, syscall.EAGAIN) || time.Now().After(deadline) {
			return nc, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(pause/2 + time.Duration(rand.Int64N(int64(pause)))):
		}
	}
}

// StdioOptions configure the child nix-daemon of Spawn.
type StdioOptions struct {
	// NixDaemon is the program to run; "" means nix-daemon from PATH.
	NixDaemon string
	// Store is passed as --store when set. When empty, the child serves
	// the default local store (NIX_REMOTE=local in its environment).
	Store string
	// Env is added to the child's environment, which is this process's
	// without NIX_REMOTE (the store is chosen by Store alone).
	Env []string
}

// closeGrace is how long Close lets the child nix-daemon exit on its own
// after its stdin closes, before killing it.
const closeGrace = 2 * time.Second

// Spawn starts `nix-daemon --stdio [--store Store]` and speaks the protocol
// over its stdin and stdout: single-user Nix, where this process owns the
// store. Such a daemon opens the store itself and trusts its peer, so the
// Conn's Trust is Trusted even though Nix 2.8 does not say so. (If Store
// names a daemon, the child only relays to it, and Trust is what the daemon
// says.) The child's stderr is kept for error messages; Close ends it.
func Spawn(ctx context.Context, o StdioOptions) (*Conn, error) {
	prog := o.NixDaemon
	if prog == "" {
		prog = "nix-daemon"
	}
	args := []string{"--stdio"}
	if o.Store != "" {
		args = append(args, "--store", o.Store)
	}
	loc := Location{Mode: Local, Store: o.Store}
	if o.Store != "" {
		if l, err := ParseURI(o.Store); err == nil {
			loc = l
		} else {
			loc.Mode = Auto // unknown to us; the child decides
		}
	}
	env := make([]string, 0, len(os.Environ())+len(o.Env)+1)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NIX_REMOTE=") {
			env = append(env, kv)
		}
	}
	if o.Store == "" {
		env = append(env, "NIX_REMOTE=local")
	}
	env = append(env, o.Env...)

	ch, err := startChild(prog, args, env)
	if err != nil {
		return nil, fmt.Errorf("store %s: starting %s: %w", locOrStore(loc, o.Store), prog, err)
	}
	c := newConn(loc, ch)
	c.child = ch
	if err := c.handshake(ctx); err != nil {
		ch.Close()
		return nil, fmt.Errorf("store %s: %w", locOrStore(loc, o.Store), err)
	}
	if c.trust == TrustUnknown && loc.Mode == Local {
		c.trust = Trusted
	}
	return c, nil
}

func locOrStore(loc Location, store string) string {
	if loc.Mode == Auto && store != "" {
		return store
	}
	return loc.String()
}

// child is a running nix-daemon --stdio, as a transport.
type child struct {
	cmd    *exec.Cmd
	stdin  *os.File // our end of its stdin
	stdout *os.File // our end of its stdout
	stderr *tailBuffer

	exited  chan struct{}
	waitErr error

	closeOnce sync.Once
}

func startChild(prog string, args, env []string) (*child, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	// Our own pipes rather than cmd.StdoutPipe: Wait then does not close
	// our end, so a final error message is never lost to a race with Wait.
	ch := &child{stdin: inW, stdout: outR, stderr: &tailBuffer{max: 8 << 10}, exited: make(chan struct{})}
	ch.cmd = exec.Command(prog, args...)
	ch.cmd.Env = env
	ch.cmd.Stdin = inR
	ch.cmd.Stdout = outW
	ch.cmd.Stderr = ch.stderr
	err = ch.cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, err
	}
	go func() {
		ch.waitErr = ch.cmd.Wait()
		close(ch.exited)
	}()
	return ch, nil
}

func (ch *child) Read(p []byte) (int, error)        { return ch.stdout.Read(p) }
func (ch *child) Write(p []byte) (int, error)       { return ch.stdin.Write(p) }
func (ch *child) SetReadDeadline(t time.Time) error { return ch.stdout.SetReadDeadline(t) }

// Close closes the child's stdin (it exits at EOF) and our end of its
// stdout (unblocking a read in flight), then waits a short grace before
// killing it.
func (ch *child) Close() error {
	ch.closeOnce.Do(func() {
		ch.stdin.Close()
		ch.stdout.Close()
		select {
		case <-ch.exited:
		case <-time.After(closeGrace):
			ch.cmd.Process.Kill()
			<-ch.exited
		}
	})
	return nil
}

// release closes the child's stdin and our end of its stdout without
// waiting: it exits on its own at the end of its input.
func (ch *child) release() {
	ch.closeOnce.Do(func() {
		ch.stdin.Close()
		ch.stdout.Close()
	})
}

// annotate adds what the child said on stderr, and how it ended, to an
// I/O error: a nix-daemon that cannot open its store says why there.
func (ch *child) annotate(err error) error {
	select {
	case <-ch.exited:
	case <-time.After(500 * time.Millisecond):
	}
	var parts []string
	select {
	case <-ch.exited:
		if ch.waitErr != nil {
			parts = append(parts, "nix-daemon "+ch.waitErr.Error())
		} else {
			parts = append(parts, "nix-daemon exited")
		}
	default:
	}
	if tail := strings.TrimSpace(stripANSI(ch.stderr.String())); tail != "" {
		parts = append(parts, tail)
	}
	if len(parts) == 0 {
		return err
	}
	return fmt.Errorf("%w (%s)", err, strings.Join(parts, ": "))
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
