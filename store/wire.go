package store

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
)

// Wire encoding (nix-reference 1.2): every integer is a u64 little-endian;
// a string is its u64 length, its bytes and zero padding to a multiple of 8.

const (
	// maxStringLen bounds any string the peer sends; a length above it is a
	// protocol error rather than an allocation.
	maxStringLen = 64 << 20
	// maxListLen bounds the element count of lists and field sets. Memory
	// still grows only with the bytes actually received (see decoder.strs).
	maxListLen = 1 << 24
	// allocStep is the most a decoder allocates before the bytes arrive.
	allocStep = 64 << 10
)

// encoder buffers one request; the first write error sticks.
type encoder struct {
	w   *bufio.Writer
	err error
	buf [8]byte
}

func (e *encoder) u64(v uint64) {
	if e.err != nil {
		return
	}
	binary.LittleEndian.PutUint64(e.buf[:], v)
	_, e.err = e.w.Write(e.buf[:])
}

func (e *encoder) bool(b bool) {
	if b {
		e.u64(1)
	} else {
		e.u64(0)
	}
}

var zeroPad [8]byte

func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	if e.err != nil {
		return
	}
	if _, e.err = e.w.WriteString(s); e.err != nil {
		return
	}
	_, e.err = e.w.Write(zeroPad[:padLen(len(s))])
}

// bytes writes b as a string, like str.
func (e *encoder) bytes(b []byte) {
	e.u64(uint64(len(b)))
	if e.err != nil {
		return
	}
	if _, e.err = e.w.Write(b); e.err != nil {
		return
	}
	_, e.err = e.w.Write(zeroPad[:padLen(len(b))])
}

func (e *encoder) strs(ss []string) {
	e.u64(uint64(len(ss)))
	for _, s := range ss {
		e.str(s)
	}
}

// raw writes bytes without framing (frame payloads are unpadded).
func (e *encoder) raw(b []byte) {
	if e.err != nil {
		return
	}
	_, e.err = e.w.Write(b)
}

func (e *encoder) flush() error {
	if e.err == nil {
		e.err = e.w.Flush()
	}
	return e.err
}

func padLen(n int) int { return (8 - n%8) % 8 }

// decoder reads replies; the first error sticks and later reads return zero
// values, so a reply is decoded straight through and checked once.
type decoder struct {
	r   io.Reader
	err error
	buf [8]byte
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		if errors.Is(err, io.EOF) {
			// A stream that ends inside a reply is a truncated reply.
			err = io.ErrUnexpectedEOF
		}
		d.err = err
	}
}

func (d *decoder) u64() uint64 {
	if d.err != nil {
		return 0
	}
	if _, err := io.ReadFull(d.r, d.buf[:]); err != nil {
		d.fail(err)
		return 0
	}
	return binary.LittleEndian.Uint64(d.buf[:])
}

// bool follows Nix: any non-zero value is true.
func (d *decoder) bool() bool { return d.u64() != 0 }

// count reads a list length and bounds it.
func (d *decoder) count(what string) int {
	n := d.u64()
	if d.err == nil && n > maxListLen {
		d.fail(protocolErrorf("%s count %d exceeds the limit of %d", what, n, maxListLen))
	}
	if d.err != nil {
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.u64()
	if d.err != nil {
		return nil
	}
	if n > maxStringLen {
		d.fail(protocolErrorf("string of %d bytes exceeds the limit of %d", n, maxStringLen))
		return nil
	}
	var b []byte
	if n <= allocStep {
		b = make([]byte, n)
		if _, err := io.ReadFull(d.r, b); err != nil {
			d.fail(err)
			return nil
		}
	} else {
		// Grow with the data that actually arrives, so a hostile length
		// costs nothing until its bytes are sent.
		var buf bytes.Buffer
		buf.Grow(allocStep)
		if _, err := io.CopyN(&buf, d.r, int64(n)); err != nil {
			d.fail(err)
			return nil
		}
		b = buf.Bytes()
	}
	d.padding(int(n))
	if d.err != nil {
		return nil
	}
	return b
}

// padding reads and checks the zero padding after n bytes of payload.
func (d *decoder) padding(n int) {
	p := padLen(n)
	if d.err != nil || p == 0 {
		return
	}
	if _, err := io.ReadFull(d.r, d.buf[:p]); err != nil {
		d.fail(err)
		return
	}
	for _, c := range d.buf[:p] {
		if c != 0 {
			d.fail(protocolErrorf("non-zero string padding"))
			return
		}
	}
}

func (d *decoder) str() string { return string(d.bytes()) }

func (d *decoder) strs() []string {
	n := d.count("string list")
	ss := make([]string, 0, min(n, 1024))
	for i := 0; i < n && d.err == nil; i++ {
		ss = append(ss, d.str())
	}
	if d.err != nil {
		return nil
	}
	return ss
}
