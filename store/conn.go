package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Trust is what the daemon says of this client (protocol ≥ 1.35).
type Trust int

const (
	// TrustUnknown: the daemon did not say (Nix before 2.15 never does).
	TrustUnknown Trust = iota
	// Trusted: the client may import unsigned paths and set any option.
	Trusted
	// NotTrusted: imports need signatures the daemon trusts.
	NotTrusted
)

func (t Trust) String() string {
	switch t {
	case Trusted:
		return "trusted"
	case NotTrusted:
		return "not trusted"
	default:
		return "unknown"
	}
}

// transport is the byte stream under a Conn: a unix socket or a child's
// pipes. Read deadlines let a Conn tell whether the daemon hung up after an
// error without blocking for the next reply.
type transport interface {
	io.ReadWriteCloser
	SetReadDeadline(time.Time) error
}

// defaultErrorProbe is how long a Conn waits after a daemon error to see
// whether the daemon hangs up (what Nix 2.8 does when an op's arguments were
// unacceptable). Usually the second error is already buffered.
const defaultErrorProbe = 20 * time.Millisecond

var errClosed = errors.New("closed by the client")

// Conn is a connection to a Nix daemon. Its methods may be called from
// several goroutines; they are carried out one at a time, as the protocol
// allows one request in flight per connection.
type Conn struct {
	loc   Location
	t     transport
	r     *bufio.Reader
	enc   encoder
	dec   decoder
	child *child // the nix-daemon --stdio process, for Spawn
	frame []byte // AddToStoreNar's frame buffer, kept for the next call

	sem chan struct{} // held by the call in flight

	protocol int
	version  string
	trust    Trust

	logger     atomic.Pointer[func(Event)]
	errorProbe time.Duration

	mu      sync.Mutex
	broken  error    // why the connection is unusable, or nil
	options *Options // last sent by SetOptions

	closeOnce sync.Once
	closeErr  error
}

func newConn(loc Location, t transport) *Conn {
	c := &Conn{
		loc:        loc,
		t:          t,
		r:          bufio.NewReaderSize(t, 64<<10),
		sem:        make(chan struct{}, 1),
		errorProbe: defaultErrorProbe,
	}
	c.enc.w = bufio.NewWriterSize(t, 64<<10)
	c.dec.r = c.r
	return c
}

// Location is where this connection leads: the daemon's socket, or the
// store the child nix-daemon serves.
func (c *Conn) Location() Location { return c.loc }

// Protocol is the negotiated protocol version, major<<8 | minor (Nix 2.8:
// 0x122, i.e. 1.34).
func (c *Conn) Protocol() int { return c.protocol }

// DaemonVersion is the daemon's Nix version ("2.8.0"), or "" when its
// protocol (< 1.33) does not tell.
func (c *Conn) DaemonVersion() string { return c.version }

// Trust is whether the daemon trusts this client. Daemons speaking
// protocol ≥ 1.35 say so. For older ones it is TrustUnknown, except for a
// child nix-daemon --stdio serving a local store (Spawn): that peer is
// trusted by definition, so Trust reports Trusted.
func (c *Conn) Trust() Trust { return c.trust }

// SetLogger sets the function that receives the daemon's log lines,
// activities and results while a call runs (nil discards them). It is called
// from the goroutine of the call or from one the call waits for, never
// concurrently, and must not call back into the Conn.
func (c *Conn) SetLogger(fn func(Event)) {
	if fn == nil {
		c.logger.Store(nil)
		return
	}
	c.logger.Store(&fn)
}

func (c *Conn) emit(ev Event) {
	if fn := c.logger.Load(); fn != nil {
		(*fn)(ev)
	}
}

// Release ends the connection as Close does, except that it does not wait
// for the child nix-daemon of Spawn to exit: the child exits by itself at
// the end of its input, and its temp roots go with it. It is for a process
// that is about to exit and whose roots no longer need the connection; it
// saves waiting for a C++ process to tear down (2 to 4 ms).
func (c *Conn) Release() error {
	if c.child == nil {
		return c.Close()
	}
	c.closeOnce.Do(func() {
		c.setBroken(errClosed)
		c.child.release()
	})
	return nil
}

// Close ends the connection (and the child nix-daemon of Spawn). A call in
// flight fails with ErrBroken.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.setBroken(errClosed)
		c.closeErr = c.t.Close()
	})
	return c.closeErr
}

func (c *Conn) setBroken(cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken == nil {
		c.broken = cause
	}
}

func (c *Conn) brokenErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken == nil {
		return nil
	}
	return fmt.Errorf("%w: %v", ErrBroken, c.broken)
}

// syncedError is an operation failure after which the stream is still in
// step with the daemon, so the connection stays usable.
type syncedError struct{ err error }

func (e *syncedError) Error() string { return e.err.Error() }
func (e *syncedError) Unwrap() error { return e.err }

// opError adds the store, the operation and its argument to err.
func (c *Conn) opError(op, arg string, err error) error {
	if arg == "" {
		return fmt.Errorf("store %s: %s: %w", c.loc, op, err)
	}
	return fmt.Errorf("store %s: %s %s: %w", c.loc, op, arg, err)
}

// call runs one request/reply exchange: fn writes the request and reads the
// reply. It serialises calls, aborts on ctx by closing the transport (the
// protocol has no other way to cancel), and decides from fn's error whether
// the connection survives.
func (c *Conn) call(ctx context.Context, op, arg string, fn func() error) error {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return c.opError(op, arg, ctx.Err())
	}
	defer func() { <-c.sem }()

	if err := c.brokenErr(); err != nil {
		return c.opError(op, arg, err)
	}
	if err := ctx.Err(); err != nil {
		return c.opError(op, arg, err)
	}
	if c.r.Buffered() > 0 {
		// The daemon never speaks unasked: bytes waiting now are the tail
		// of an earlier failure, and would be taken for this reply.
		c.setBroken(protocolErrorf("unsolicited data from the daemon"))
		return c.opError(op, arg, c.brokenErr())
	}

	stop := context.AfterFunc(ctx, func() { c.t.Close() })
	err := fn()
	if !stop() {
		c.setBroken(fmt.Errorf("%s cancelled: %w", op, context.Cause(ctx)))
		return c.opError(op, arg, fmt.Errorf("%w (the connection was closed to abort the request)", ctx.Err()))
	}
	if err == nil {
		return nil
	}

	var de *DaemonError
	var se *syncedError
	var fe *fatalError
	switch {
	case errors.As(err, &fe):
		c.setBroken(fe.err)
		return c.opError(op, arg, fe.err)
	case errors.As(err, &de):
		de.Op, de.Path = op, arg
		if c.brokenErr() == nil && c.peerHungUp() {
			c.setBroken(fmt.Errorf("the daemon hung up after its error: %s", de.Message))
		}
		return c.opError(op, arg, err)
	case errors.As(err, &se):
		return c.opError(op, arg, se.err)
	case errors.Is(err, ErrBroken):
		return c.opError(op, arg, err)
	}
	if be := c.brokenErr(); be != nil {
		// Already broken, e.g. closed under us by Close: that is the cause,
		// not the "use of closed file" it led to.
		return c.opError(op, arg, be)
	}
	if c.child != nil {
		err = c.child.annotate(err)
	}
	c.setBroken(err)
	return c.opError(op, arg, fmt.Errorf("%w: %w", ErrBroken, err))
}

// peerHungUp reports whether the daemon sent more, or closed the stream,
// right after an error. Nix 2.8 sends a connection-fatal error twice and
// hangs up; an ordinary error is followed by silence.
func (c *Conn) peerHungUp() bool {
	if c.r.Buffered() > 0 {
		return true
	}
	if c.errorProbe <= 0 {
		return false
	}
	if err := c.t.SetReadDeadline(time.Now().Add(c.errorProbe)); err != nil {
		return false
	}
	_, err := c.r.Peek(1)
	c.t.SetReadDeadline(time.Time{})
	return !errors.Is(err, os.ErrDeadlineExceeded)
}

// flush sends the buffered request.
func (c *Conn) flush() error { return c.enc.flush() }

// request writes an op code and its arguments, sends them, and reads the
// log stream up to the reply.
func (c *Conn) request(op opCode, args func(e *encoder)) error {
	c.enc.u64(uint64(op))
	if args != nil {
		args(&c.enc)
	}
	if err := c.flush(); err != nil {
		return err
	}
	return c.stderrLoop(nil, nil)
}

// reply checks the decoder after a reply was read.
func (c *Conn) reply() error { return c.dec.err }
