package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// ErrHashMismatch means a NAR did not hash to what the store records.
var ErrHashMismatch = errors.New("NAR hash mismatch")

const (
	// frameSize is the payload of one upload frame.
	frameSize = 64 << 10
	// uploadErrorWait is how long a failed upload waits for the daemon to
	// explain itself before giving up on the connection.
	uploadErrorWait = time.Second
)

// fatalError is an operation failure after which the stream is out of step
// with the daemon: the connection is given up, but the error is reported as
// itself (it is not one a reconnect would heal).
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// NarFromPath writes the NAR serialisation of path to w and returns the
// path's info. It queries the info first, since Nix 2.8 dumps without
// checking validity and sends the NAR with no length: the NarSize bytes it
// copies are checked against NarHash. A mismatch fails with ErrHashMismatch
// and gives up the connection. If w fails, the NAR is still read to its end
// so that the connection stays usable.
func (c *Conn) NarFromPath(ctx context.Context, path string, w io.Writer) (*PathInfo, error) {
	const op = "NarFromPath"
	if err := ValidatePath(path); err != nil {
		return nil, c.opError(op, "", err)
	}
	var info *PathInfo
	err := c.call(ctx, op, path, func() error {
		var err error
		if info, err = c.queryPathInfo(path); err != nil {
			return err
		}
		if err := c.request(opNarFromPath, func(e *encoder) { e.str(path) }); err != nil {
			return err
		}
		return c.copyNar(info, w)
	})
	if err != nil {
		return nil, err
	}
	return info, nil
}

func (c *Conn) copyNar(info *PathInfo, w io.Writer) error {
	want, err := hex.DecodeString(info.NarHash)
	if err != nil || len(want) != sha256.Size {
		return protocolErrorf("NAR hash %q of %s is not a base16 sha256", info.NarHash, info.Path)
	}
	// A path that vanished since QueryPathInfo shows up as an error where
	// the NAR's first string length (13, "nix-archive-1") should be.
	head, err := c.r.Peek(8)
	if err != nil {
		return err
	}
	if binary.LittleEndian.Uint64(head) == stderrError {
		c.r.Discard(8)
		return c.readError()
	}
	h := sha256.New()
	sw := &stickyWriter{w: w}
	if _, err := io.CopyN(io.MultiWriter(h, sw), c.r, int64(info.NarSize)); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	if got := h.Sum(nil); string(got) != string(want) {
		return &fatalError{fmt.Errorf("%w: the store records sha256 %s (%d bytes), the daemon sent %x",
			ErrHashMismatch, info.NarHash, info.NarSize, got)}
	}
	if sw.err != nil {
		return &syncedError{fmt.Errorf("writing the NAR: %w", sw.err)}
	}
	return nil
}

// stickyWriter passes writes on until the first error, then swallows them.
type stickyWriter struct {
	w   io.Writer
	err error
}

func (s *stickyWriter) Write(p []byte) (int, error) {
	if s.err == nil {
		_, s.err = s.w.Write(p)
	}
	return len(p), nil
}

// AddToStoreNar imports the NAR read from nar as info.Path. The daemon
// checks the NAR's hash and size against info, that every reference is
// already valid (import in topological order), and, unless dontCheckSigs is
// set and the daemon trusts this client, that info.Sigs carries a signature
// by a trusted key. dontCheckSigs is the caller's decision alone: untrusted
// clients have it ignored by the daemon.
func (c *Conn) AddToStoreNar(ctx context.Context, info PathInfo, nar io.Reader, repair, dontCheckSigs bool) error {
	const op = "AddToStoreNar"
	if err := ValidatePath(info.Path); err != nil {
		return c.opError(op, "", err)
	}
	if info.Deriver != "" {
		if err := ValidatePath(info.Deriver); err != nil {
			return c.opError(op, info.Path, fmt.Errorf("deriver: %w", err))
		}
	}
	if err := validatePaths(info.References); err != nil {
		return c.opError(op, info.Path, fmt.Errorf("reference: %w", err))
	}
	if info.NarHash == "" {
		return c.opError(op, info.Path, errors.New("no NAR hash given"))
	}
	if nar == nil {
		return c.opError(op, info.Path, errors.New("no NAR given"))
	}
	return c.call(ctx, op, info.Path, func() error {
		e := &c.enc
		e.u64(uint64(opAddToStoreNar))
		e.str(info.Path)
		e.str(info.Deriver)
		e.str(info.NarHash)
		e.strs(info.References)
		e.u64(info.RegistrationTime)
		e.u64(info.NarSize)
		e.bool(info.Ultimate)
		e.strs(info.Sigs)
		e.str(info.CA)
		e.bool(repair)
		e.bool(dontCheckSigs)
		if err := c.flush(); err != nil {
			return err
		}
		if c.protocol >= 0x117 { // 1.23: framed
			return c.uploadFrames(nar)
		}
		// 1.21–1.22: the daemon pulls the NAR through STDERR_READ.
		return c.stderrLoop(nar, nil)
	})
}

// uploadFrames sends nar as frames (u64 length, raw bytes; u64 0 ends).
// The daemon starts its log stream before reading the frames and may log
// while reading, so the stream is read concurrently; otherwise both sides
// could block on full buffers.
func (c *Conn) uploadFrames(nar io.Reader) error {
	done := make(chan error, 1)
	// Transports that can end a blocked write (sockets; not every pipe).
	wd, _ := c.t.(interface{ SetWriteDeadline(time.Time) error })
	var uploading, interrupted atomic.Bool
	uploading.Store(true)
	go func() {
		err := c.stderrLoop(nil, nil)
		// An answer mid-upload (a refusal): a daemon that reads no more
		// would leave a frame write blocked for good, so end it now.
		if wd != nil && uploading.Load() {
			interrupted.Store(true)
			wd.SetWriteDeadline(time.Now())
		}
		done <- err
	}()
	// The deadline may have come just after the last frame was written:
	// the connection stays usable then.
	defer func() {
		if interrupted.Load() {
			wd.SetWriteDeadline(time.Time{})
		}
	}()

	if c.frame == nil {
		c.frame = make([]byte, frameSize)
	}
	buf := c.frame
	for {
		select {
		case err := <-done:
			// The daemon answered before it had the whole NAR: whether it
			// still expects frames is unknowable, so the connection is lost.
			if err == nil {
				err = protocolErrorf("the daemon finished before the upload did")
			}
			c.setBroken(fmt.Errorf("upload interrupted: %v", err))
			return err
		default:
		}
		n, rerr := io.ReadFull(nar, buf)
		if n > 0 {
			c.enc.u64(uint64(n))
			c.enc.raw(buf[:n])
			if err := c.flush(); err != nil {
				return c.afterWriteError(err, done)
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			// Never end the frames of a NAR we could not read: the daemon
			// would take the truncated stream for the whole NAR. Hang up.
			c.setBroken(fmt.Errorf("upload abandoned: %v", rerr))
			c.t.Close()
			<-done
			return &fatalError{fmt.Errorf("reading the NAR to upload: %w", rerr)}
		}
	}
	c.enc.u64(0)
	if err := c.flush(); err != nil {
		return c.afterWriteError(err, done)
	}
	uploading.Store(false)
	return <-done
}

// afterWriteError handles a failed frame write: the daemon has usually hung
// up, possibly after saying why, so its message is preferred.
func (c *Conn) afterWriteError(werr error, done <-chan error) error {
	var err error
	select {
	case err = <-done:
	case <-time.After(uploadErrorWait):
		c.t.Close()
		err = <-done
	}
	c.setBroken(fmt.Errorf("upload failed: %v", werr))
	var de *DaemonError
	if errors.As(err, &de) {
		return de
	}
	return werr
}
