package binarycache

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"

	"github.com/nix-aurora/nix-aurora/nar"
)

// decompressor wraps r to decompress a NAR file by its Compression field
// (not by its file name: gzip NARs are named .nar). Construction is lazy,
// so that every error surfaces from Read.
type decompressor struct {
	method string
	src    io.Reader
	r      io.Reader
	zstd   *zstd.Decoder
	xz     *xzDecoder
	err    error
}

// Compressions this package can read.
var readableCompressions = []string{"none", "xz", "bzip2", "zstd", "gzip", "br"}

func checkCompression(method string) error {
	for _, m := range readableCompressions {
		if m == method {
			return nil
		}
	}
	return fmt.Errorf("unsupported compression %q (supported: none, xz, bzip2, zstd, gzip, br)", method)
}

// Decompress returns r decompressed by method (a narinfo's Compression),
// with the decoders nix-init uses; Close gives the decoder back.
func Decompress(method string, r io.Reader) io.ReadCloser {
	return &decompressor{method: method, src: r}
}

// Close gives the decoder back; the decompressor must not be read after.
func (d *decompressor) Close() error {
	d.close()
	return nil
}

func (d *decompressor) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if d.r == nil {
		var err error
		switch d.method {
		case "none":
			d.r = d.src
		case "xz":
			d.r, err = d.takeXZ()
		case "bzip2":
			d.r = bzip2.NewReader(d.src)
		case "zstd":
			d.zstd, err = d.takeZstd()
			d.r = d.zstd
		case "gzip":
			d.r, err = gzip.NewReader(d.src)
		case "br":
			d.r = brotli.NewReader(d.src)
		default:
			err = checkCompression(d.method)
		}
		if err != nil {
			d.err = fmt.Errorf("decompressing (%s): %w", d.method, err)
			return 0, d.err
		}
	}
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("decompressing (%s): %w", d.method, err)
		d.err = err
	}
	return n, err
}

// zstdDecoders are the decoders not in use; at most maxZstdDecoders exist,
// whatever the number of downloads. A decoder holds a window (up to 8 MiB
// for a large NAR from nix copy): a new one per NAR made most of a cold
// closure's garbage, and sixteen at once most of nix-init's heap.
// Decompression is CPU work, so more decoders than a few do not help.
// Not a sync.Pool: under nix-init's heap limit the collector runs often,
// and each cycle would empty it.
var (
	zstdDecoders    = make(chan *zstd.Decoder, maxZstdDecoders)
	zstdSlots       = make(chan struct{}, maxZstdDecoders)
	maxZstdDecoders = 4
)

// firstBytes waits for the compressed stream's first bytes, so that a
// slow response holds no decoder slot, and buffers what the decoder reads.
func (d *decompressor) firstBytes() (*bufio.Reader, error) {
	br := bufio.NewReaderSize(d.src, 4<<10)
	if _, err := br.Peek(1); err != nil && err != io.EOF {
		return nil, err
	}
	return br, nil
}

// takeZstd waits for the first compressed bytes, then for a decoder.
func (d *decompressor) takeZstd() (*zstd.Decoder, error) {
	br, err := d.firstBytes()
	if err != nil {
		return nil, err
	}
	zstdSlots <- struct{}{}
	select {
	case z := <-zstdDecoders:
		if err := z.Reset(br); err != nil {
			z.Close()
			<-zstdSlots
			return nil, err
		}
		return z, nil
	default:
	}
	z, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
	if err != nil {
		<-zstdSlots
		return nil, err
	}
	return z, nil
}

func (d *decompressor) close() {
	d.closeXZ()
	if d.zstd == nil {
		return
	}
	if d.zstd.Reset(nil) == nil {
		zstdDecoders <- d.zstd
	} else {
		d.zstd.Close()
	}
	d.zstd = nil
	<-zstdSlots
}

// hashCheck counts and hashes the bytes passing through, fails as soon as
// more than size bytes arrive, and at EOF fails unless exactly size bytes
// with the expected sha256 arrived.
type hashCheck struct {
	r        io.Reader
	what     string // "NAR" or "compressed file"
	want     []byte // nil: not checked
	size     uint64
	haveSize bool // false: size not checked
	n        uint64
	h        hash.Hash
	err      error
}

func newHashCheck(r io.Reader, what string, want []byte, size uint64, haveSize bool) *hashCheck {
	if !haveSize {
		size = ^uint64(0)
	}
	return &hashCheck{r: r, what: what, want: want, size: size, haveSize: haveSize, h: sha256.New()}
}

func (c *hashCheck) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.r.Read(p)
	if uint64(n) > c.size-c.n {
		n = int(c.size - c.n)
		c.h.Write(p[:n])
		c.n += uint64(n)
		c.err = fmt.Errorf("%w: more than the %d bytes of %s the narinfo announces", ErrHashMismatch, c.size, c.what)
		return n, c.err
	}
	c.h.Write(p[:n])
	c.n += uint64(n)
	if err == io.EOF {
		if c.haveSize && c.n != c.size {
			c.err = fmt.Errorf("%w: %s is %d bytes, the narinfo says %d", ErrHashMismatch, c.what, c.n, c.size)
			return n, c.err
		}
		if got := c.h.Sum(nil); c.want != nil && !bytes.Equal(got, c.want) {
			c.err = fmt.Errorf("%w: %s has sha256 %s, the narinfo says %s", ErrHashMismatch, c.what, nix32(got), nix32(c.want))
			return n, c.err
		}
		c.err = io.EOF
	} else if err != nil {
		c.err = err
	}
	return n, err
}

// resumingBody reads a NAR file and, when the connection fails with a
// transient error mid-way, asks again for the rest (HTTP Range), with the
// cache's retry policy. A server that cannot resume makes it give up with
// the original error, and so does one that keeps failing without sending a
// byte (a body that stalls or breaks at the same offset every time):
// after as many failures in a row without progress as the retry policy
// has attempts.
type resumingBody struct {
	ctx     context.Context
	c       *Cache
	name    string
	cur     io.ReadCloser
	off     int64
	b       retrier
	err     error
	stuck   int   // failures in a row at offset stuckAt
	stuckAt int64 // where the last failure happened
}

func (r *resumingBody) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	for {
		n, err := r.cur.Read(p)
		r.off += int64(n)
		if err == nil || err == io.EOF || n > 0 {
			if err != nil && err != io.EOF {
				// Report the bytes now; handle the error on the next call.
				r.err = r.resume(err)
				return n, nil
			}
			return n, err
		}
		if r.err = r.resume(err); r.err != nil {
			return 0, r.err
		}
	}
}

// resume reopens the file at the current offset; if it cannot, it returns
// the error to report.
func (r *resumingBody) resume(cause error) error {
	if !IsTransient(cause) || r.ctx.Err() != nil {
		return cause
	}
	if r.stuck > 0 && r.off == r.stuckAt {
		r.stuck++
	} else {
		r.stuck, r.stuckAt = 1, r.off
	}
	if r.stuck >= r.b.attempts {
		return fmt.Errorf("%w (no progress at byte %d after %d attempts)", cause, r.off, r.stuck)
	}
	r.cur.Close()
	r.cur = io.NopCloser(bytes.NewReader(nil))
	first := true
	err := r.b.do(r.ctx, fmt.Sprintf("resume %s at byte %d", r.name, r.off), func() error {
		if first {
			first = false
			return cause // counts as the first failed attempt, and backs off
		}
		rc, err := r.c.be.open(r.ctx, r.name, r.off, false)
		if err != nil {
			return err
		}
		r.cur = rc
		return nil
	})
	if err != nil {
		r.c.logf("cannot resume %s from %s at byte %d: %v", r.name, r.c.url, r.off, err)
		return cause
	}
	return nil
}

func (r *resumingBody) Close() error { return r.cur.Close() }

// narStream is what OpenNar returns.
type narStream struct {
	pr     *io.PipeReader
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
	wrap   func(error) error
	closer func()
}

func (s *narStream) Read(p []byte) (int, error) {
	n, err := s.pr.Read(p)
	if err != nil && err != io.EOF {
		err = s.wrap(err)
	}
	return n, err
}

func (s *narStream) Close() error {
	s.once.Do(func() {
		s.cancel()
		s.pr.Close()
		<-s.done
		s.closer()
	})
	return nil
}

// OpenNar downloads the NAR that ni (a narinfo this cache returned, through
// NarInfo, Lookup or Plan) describes, and returns it decompressed as a
// stream. Nothing is buffered beyond small read buffers. The stream is
// verified as it is read: it fails as soon as more than NarSize bytes
// arrive, and at the end it returns io.EOF only if exactly NarSize bytes
// with the sha256 NarHash arrived and they form one canonical NAR (package
// nar); otherwise the last Read fails (ErrHashMismatch, or a nar format
// error). Consumers must treat the bytes as unverified until io.EOF.
//
// A connection failing mid-way is resumed (HTTP Range) when the server
// allows it. The caller must Close the stream; that frees the cache's
// connection slot.
func (c *Cache) OpenNar(ctx context.Context, ni *NarInfo) (io.ReadCloser, error) {
	raw, err := c.openRaw(ctx, ni)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	s := &narStream{pr: pr, cancel: raw.cancel, done: make(chan struct{}), wrap: raw.wrap, closer: raw.close}
	go func() {
		defer close(s.done)
		_, err := nar.Copy(pw, raw.check)
		pw.CloseWithError(raw.classify(err))
	}()
	return s, nil
}

// ReadNar downloads the NAR that ni describes and hands it, decompressed,
// to read, which must parse it strictly (a nar.Reader) to its end; it is
// OpenNar without the second parse and the goroutine in between, for a
// consumer that parses the NAR anyway. The stream's last Read fails
// unless exactly NarSize bytes with the sha256 NarHash arrived, so read
// must treat what it got as unverified until it has seen io.EOF; ReadNar
// fails if read returns nil before the stream ended. A NAR format error
// that read returns after every byte arrived and matched is permanent.
func (c *Cache) ReadNar(ctx context.Context, ni *NarInfo, read func(io.Reader) error) error {
	raw, err := c.openRaw(ctx, ni)
	if err != nil {
		return err
	}
	defer raw.close()
	defer raw.cancel()
	err = read(wrappedReader{raw.check, raw.wrap})
	if err == nil && raw.check.err != io.EOF {
		err = raw.wrap(fmt.Errorf("%w: the NAR was not read to its end", ErrHashMismatch))
	}
	return raw.classify(err)
}

// wrappedReader names the path and cache in its reader's errors.
type wrappedReader struct {
	r    io.Reader
	wrap func(error) error
}

func (w wrappedReader) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if err != nil && err != io.EOF {
		err = w.wrap(err)
	}
	return n, err
}

// rawNar is a NAR download with its checks, not parsed.
type rawNar struct {
	check  *hashCheck // the decompressed NAR, checked against NarSize and NarHash
	cancel context.CancelFunc
	close  func()
	wrap   func(error) error
}

// classify marks a NAR format error found in bytes that all arrived and
// matched the narinfo as permanent: no retry changes them, and one that
// reads as truncated must not look like a connection cut short
// (io.ErrUnexpectedEOF) either.
func (r *rawNar) classify(err error) error {
	var fe *nar.FormatError
	if r.check.err == io.EOF && errors.As(err, &fe) {
		flat := *fe
		if fe.Err != nil {
			flat.Msg, flat.Err = fe.Msg+": "+fe.Err.Error(), nil
		}
		var be *Error
		if errors.As(err, &be) {
			return &Error{Op: be.Op, Path: be.Path, Cache: be.Cache, Err: &permanentError{&flat}}
		}
		return r.wrap(&permanentError{&flat})
	}
	return err
}

func (c *Cache) openRaw(ctx context.Context, ni *NarInfo) (*rawNar, error) {
	wrap := func(err error) error {
		return &Error{Op: "download NAR", Path: ni.StorePath, Cache: c.url, Err: err}
	}
	narDigest, err := ni.narDigest()
	if err != nil {
		return nil, wrap(fmt.Errorf("%w: NarHash: %v", ErrBadNarInfo, err))
	}
	if ni.NarSize == 0 {
		return nil, wrap(fmt.Errorf("%w: NarSize is 0", ErrBadNarInfo))
	}
	method := ni.Compression
	if method == "" {
		method = "bzip2"
	}
	if err := checkCompression(method); err != nil {
		return nil, wrap(&permanentError{err})
	}
	var fileDigest []byte
	if c.opts.VerifyFileHash && ni.FileHash != "" {
		if fileDigest, err = sha256Digest(ni.FileHash); err != nil {
			return nil, wrap(fmt.Errorf("%w: FileHash: %v", ErrBadNarInfo, err))
		}
	}
	if err := c.sem.Acquire(ctx, 1); err != nil {
		return nil, wrap(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	var body io.ReadCloser
	err = c.retry.do(ctx, fmt.Sprintf("download %s from %s", ni.URL, c.url), func() error {
		rc, err := c.be.open(ctx, ni.URL, 0, false)
		if err != nil {
			return err
		}
		body = rc
		return nil
	})
	if err != nil {
		cancel()
		c.sem.Release(1)
		if errors.Is(err, ErrNotFound) {
			err = fmt.Errorf("the narinfo exists but its NAR %s does not: %w", ni.URL, err)
		}
		return nil, wrap(err)
	}
	rb := &resumingBody{ctx: ctx, c: c, name: ni.URL, cur: body, b: c.retry}
	var file io.Reader = rb
	if fileDigest != nil || (c.opts.VerifyFileHash && ni.FileSize != 0) {
		file = newHashCheck(rb, "compressed file", fileDigest, ni.FileSize, ni.FileSize != 0)
	}
	dec := &decompressor{method: method, src: file}
	raw := &rawNar{check: newHashCheck(dec, "NAR", narDigest, ni.NarSize, true), cancel: cancel, wrap: wrap}
	raw.close = func() {
		rb.Close()
		dec.close()
		c.sem.Release(1)
	}
	return raw, nil
}

// Download writes the verified NAR of ni to w (see OpenNar) and returns its
// size. On error w may have received unverified bytes: discard them.
func (c *Cache) Download(ctx context.Context, ni *NarInfo, w io.Writer) (int64, error) {
	rc, err := c.OpenNar(ctx, ni)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	return io.Copy(w, rc)
}
