package binarycache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrNotFound: the cache does not have the file (HTTP 404 or 410, and
	// for narinfos also 401, 403 and 407, as Nix treats them; a missing
	// file in a file:// cache).
	ErrNotFound = errors.New("not in this cache")
	// ErrUntrusted: no signature of the narinfo verifies under a trusted key.
	ErrUntrusted = errors.New("not signed by any trusted key")
	// ErrBadSignature: a signature under a trusted key's name is malformed
	// (not base64, or not 64 bytes). Nix 2.8 fails on these too.
	ErrBadSignature = errors.New("malformed signature")
	// ErrHashMismatch: downloaded bytes do not match the narinfo (NarHash,
	// NarSize, or the optional FileHash and FileSize).
	ErrHashMismatch = errors.New("hash mismatch")
	// ErrBadNarInfo: a narinfo that does not parse, lacks a required field,
	// or is not for the store path that was asked for.
	ErrBadNarInfo = errors.New("invalid narinfo")
	// ErrUnsupported: a substituter this package cannot speak to at all (a
	// store type such as s3:// or ssh://); the only failure after which a
	// caller may hand the work to the daemon, which may speak it.
	ErrUnsupported = errors.New("unsupported store type")
	// ErrNotBinaryCache: the URL has no nix-cache-info.
	ErrNotBinaryCache = errors.New("does not appear to be a binary cache")
	// ErrStalled: no bytes arrived for the stall timeout.
	ErrStalled = errors.New("download stalled")
	// ErrBadContent: a reachable cache sent something no cache file can be:
	// larger than this package reads of such a file, or, in a file://
	// cache, a FIFO, device, socket or directory. Permanent, and never a
	// reason to hand the work to the daemon (it would read the same).
	ErrBadContent = errors.New("bad content from the cache")
	// ErrBadClosureIndex: a closure index that is malformed, not closed
	// under references, or has an entry failing the narinfo checks.
	ErrBadClosureIndex = errors.New("invalid closure index")
)

// Error is what the operations of this package fail with: which operation,
// on which store path or file, against which cache, and why.
type Error struct {
	Op    string // "fetch narinfo", "download NAR", "open", "upload", ...
	Path  string // the store path, hash part or file concerned; may be ""
	Cache string // the cache URL; may be ""
	Err   error
}

func (e *Error) Error() string {
	s := e.Op
	if e.Path != "" {
		s += " " + e.Path
	}
	if e.Cache != "" {
		prep := " from "
		if e.Op == "upload" || e.Op == "write" {
			prep = " to "
		}
		s += prep + e.Cache
	}
	return s + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// HTTPError is an unexpected HTTP status.
type HTTPError struct {
	Method     string
	URL        string
	StatusCode int
	Status     string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("%s %s: HTTP %s", e.Method, e.URL, e.Status)
}

// transientStatus reports whether an HTTP status may heal by retrying, as
// Nix decides: 5xx except 501, 505 and 511, and 408 and 429.
func transientStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests:
		return true
	case http.StatusNotImplemented, http.StatusHTTPVersionNotSupported, http.StatusNetworkAuthenticationRequired:
		return false
	}
	return code >= 500 && code <= 599
}

// IsTransient reports whether err may heal if the operation is retried
// later: network failures (refused, reset, timeouts, truncated bodies,
// stalls) and the HTTP statuses Nix retries. Verification failures,
// ErrNotFound, other 4xx statuses and a cancelled context are permanent.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var perm *permanentError
	if errors.As(err, &perm) {
		return false
	}
	if errors.Is(err, ErrHashMismatch) || errors.Is(err, ErrUntrusted) || errors.Is(err, ErrBadSignature) ||
		errors.Is(err, ErrBadNarInfo) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrBadClosureIndex) ||
		errors.Is(err, ErrNotBinaryCache) || errors.Is(err, ErrBadContent) {
		return false
	}
	var he *HTTPError
	if errors.As(err, &he) {
		return transientStatus(he.StatusCode)
	}
	if errors.Is(err, ErrStalled) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) ||
		errors.Is(err, syscall.ETIMEDOUT) {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return true // dial and read failures of the network itself
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return de.IsTemporary || de.IsTimeout
	}
	// A connection the server closed before answering.
	if errors.Is(err, io.EOF) {
		return true
	}
	return false
}

// permanentError marks an error that must not be retried even though it
// wraps something that looks transient.
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }
