package store

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
)

var (
	// ErrBroken means the connection can no longer be used: the daemon hung
	// up, the stream lost sync, a call was cancelled mid-request, or Close
	// was called. Open a new connection.
	ErrBroken = errors.New("connection to the Nix daemon is broken")

	// ErrNotValid means a store path is not valid (not registered) in the store.
	ErrNotValid = errors.New("path is not valid in the store")

	// ErrProtocol means the peer sent something the protocol does not allow.
	// The connection is broken afterwards.
	ErrProtocol = errors.New("Nix daemon protocol violation")
)

// DaemonError is an error reported by the daemon through its log stream
// (STDERR_ERROR). Unless the daemon also hung up, the connection stays usable.
type DaemonError struct {
	Op      string   // the operation that failed, e.g. "EnsurePath"
	Path    string   // the store path (or other argument) it was about, if any
	Message string   // the daemon's message, ANSI escapes removed
	Traces  []string // context lines the daemon added (protocol ≥ 1.26)
	Level   int      // Nix verbosity level of the error (≥ 1.26; 0 = error)
	Status  int      // exit status the daemon attached (< 1.26; 1 otherwise)
}

func (e *DaemonError) Error() string {
	if len(e.Traces) == 0 {
		return e.Message
	}
	return e.Message + " (" + strings.Join(e.Traces, "; ") + ")"
}

// IsConnectionError reports whether err means the connection is gone, so that
// a retry layer should open a new one before trying again: end of stream,
// reset, refused, broken pipe, a missing socket, or ErrBroken. Errors the
// daemon reported (*DaemonError) and cancellations are not connection errors.
func IsConnectionError(err error) bool {
	if err == nil {
		return false
	}
	var de *DaemonError
	if errors.As(err, &de) && !errors.Is(err, ErrBroken) {
		return false
	}
	if errors.Is(err, ErrBroken) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, syscall.EPIPE) {
		return true
	}
	// A socket that is missing while the daemon restarts, or whose listen
	// backlog is full (many sandboxes starting at once: EAGAIN on a unix
	// socket).
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial" && (errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.EAGAIN))
}

// protocolErrorf makes an error wrapping ErrProtocol.
func protocolErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}
