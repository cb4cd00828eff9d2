package nar

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
)

// Magic is the first string of every NAR.
const Magic = "nix-archive-1"

// Limits the Reader enforces. Nix's own limits are the file system's: a
// name is at most 255 bytes and a symlink target at most 4095 (PATH_MAX
// without its NUL). MaxDepth bounds directory nesting below the root, far
// beyond what a store path needs, so that hostile input cannot make the
// Reader's stack of open directories grow without end.
const (
	MaxNameLen   = 255
	MaxTargetLen = 4095
	MaxDepth     = 256
	maxTokenLen  = 16 // longer than any keyword of the format
	bufSize      = 32 << 10
)

// Type is the kind of a NAR entry.
type Type uint8

// The three kinds of file a NAR can hold.
const (
	TypeRegular Type = iota + 1
	TypeDirectory
	TypeSymlink
)

func (t Type) String() string {
	switch t {
	case TypeRegular:
		return "regular"
	case TypeDirectory:
		return "directory"
	case TypeSymlink:
		return "symlink"
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// Header describes one entry of a NAR.
type Header struct {
	// Path is "/" for the root and "/a/b" below it.
	Path       string
	Type       Type
	Executable bool   // regular files only
	Size       int64  // regular files only: the length of the contents
	LinkTarget string // symlinks only, exactly as stored
}

// ErrInvalid is matched (errors.Is) by every *FormatError.
var ErrInvalid = errors.New("invalid NAR")

// A FormatError reports input that is not a canonical NAR.
type FormatError struct {
	Path   string // the entry concerned ("/" is the root; "" before it)
	Offset int64  // byte offset in the NAR where the problem starts
	Msg    string
	Err    error // the underlying cause, e.g. io.ErrUnexpectedEOF; may be nil
}

func (e *FormatError) Error() string {
	where := "NAR"
	if e.Path != "" {
		where = fmt.Sprintf("NAR entry %q", e.Path)
	}
	s := fmt.Sprintf("invalid %s at byte %d: %s", where, e.Offset, e.Msg)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *FormatError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrInvalid) true for every FormatError.
func (e *FormatError) Is(target error) bool { return target == ErrInvalid }

type dirFrame struct {
	path    string
	prev    string // the last entry name read in this directory
	hasPrev bool
}

// A Reader reads a NAR strictly, entry by entry, like archive/tar: Next
// returns the next entry's header, and Read the contents of a regular file.
// Next returns io.EOF only after the root node is complete and the input
// has ended right after it. Errors are sticky.
type Reader struct {
	br        *bufio.Reader
	off       int64 // bytes consumed
	err       error
	started   bool
	stack     []dirFrame
	cur       *Header
	remaining int64 // contents of cur not yet read
	where     string
}

// NewReader returns a Reader for the NAR in r. The Reader buffers its
// input: it may read from r beyond what it has consumed, but never beyond
// the end of a valid NAR, whose end it checks by reading io.EOF.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, bufSize)}
}

// Reset makes r read a new NAR from src, keeping its buffer: a process
// that reads many NARs need not allocate one per NAR.
func (r *Reader) Reset(src io.Reader) {
	br := r.br
	br.Reset(src)
	*r = Reader{br: br, stack: r.stack[:0]}
}

// Offset returns the number of NAR bytes consumed so far. After Next has
// returned io.EOF it is the size of the whole NAR.
func (r *Reader) Offset() int64 { return r.off }

// Next advances to the next entry, skipping what is left of the current
// file's contents, and returns its header. Entries come in NAR order:
// a directory before its entries, entries in increasing byte order of name.
func (r *Reader) Next() (*Header, error) {
	if r.err != nil {
		return nil, r.err
	}
	h, err := r.next()
	if err != nil {
		r.err = err
		r.cur = nil
		return nil, err
	}
	r.cur = h
	return h, nil
}

// Read reads the contents of the current entry. It returns io.EOF at the
// end of a regular file, and at once for directories and symlinks.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.cur == nil || r.cur.Type != TypeRegular || r.remaining == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.remaining {
		p = p[:r.remaining]
	}
	start := r.off
	n, err := r.br.Read(p)
	r.off += int64(n)
	r.remaining -= int64(n)
	if err != nil {
		err = r.readErr(start, err)
		r.err = err
		return n, err
	}
	return n, nil
}

func (r *Reader) next() (*Header, error) {
	if !r.started {
		r.started = true
		r.where = ""
		if err := r.expect(Magic); err != nil {
			return nil, err
		}
		r.where = "/"
		return r.node("/")
	}
	if r.cur != nil {
		if err := r.finish(r.cur); err != nil {
			return nil, err
		}
		r.cur = nil
	}
	for {
		if len(r.stack) == 0 {
			return nil, r.atEnd()
		}
		top := &r.stack[len(r.stack)-1]
		r.where = top.path
		start := r.off
		tok, err := r.str(maxTokenLen, "token")
		if err != nil {
			return nil, err
		}
		switch tok {
		case ")":
			r.stack = r.stack[:len(r.stack)-1]
			if len(r.stack) > 0 {
				if err := r.expect(")"); err != nil {
					return nil, err
				}
			}
			continue
		case "entry":
		default:
			return nil, r.errAt(start, "unexpected %q in directory (want \"entry\" or \")\")", tok)
		}
		if err := r.expect("("); err != nil {
			return nil, err
		}
		if err := r.expect("name"); err != nil {
			return nil, err
		}
		start = r.off
		name, err := r.str(MaxNameLen, "entry name")
		if err != nil {
			return nil, err
		}
		if msg := checkName(name); msg != "" {
			return nil, r.errAt(start, "%s", msg)
		}
		if top.hasPrev && name <= top.prev {
			if name == top.prev {
				return nil, r.errAt(start, "duplicate entry name %q", name)
			}
			return nil, r.errAt(start, "entry %q after %q: names are not in increasing byte order", name, top.prev)
		}
		top.prev, top.hasPrev = name, true
		p := join(top.path, name)
		r.where = p
		if err := r.expect("node"); err != nil {
			return nil, err
		}
		return r.node(p)
	}
}

// node parses a node's opening up to its contents (regular file), its end
// (symlink) or its first entry (directory, which stays open on the stack).
func (r *Reader) node(p string) (*Header, error) {
	if err := r.expect("("); err != nil {
		return nil, err
	}
	if err := r.expect("type"); err != nil {
		return nil, err
	}
	start := r.off
	kind, err := r.str(maxTokenLen, "type")
	if err != nil {
		return nil, err
	}
	switch kind {
	case "regular":
		h := &Header{Path: p, Type: TypeRegular}
		start = r.off
		tok, err := r.str(maxTokenLen, "token")
		if err != nil {
			return nil, err
		}
		if tok == "executable" {
			h.Executable = true
			if err := r.expect(""); err != nil {
				return nil, err
			}
			start = r.off
			if tok, err = r.str(maxTokenLen, "token"); err != nil {
				return nil, err
			}
		}
		if tok != "contents" {
			return nil, r.errAt(start, "unexpected %q in regular file (want \"contents\")", tok)
		}
		start = r.off
		n, err := r.u64()
		if err != nil {
			return nil, err
		}
		if n > math.MaxInt64 {
			return nil, r.errAt(start, "file size %d is too large", n)
		}
		h.Size = int64(n)
		r.remaining = h.Size
		return h, nil
	case "symlink":
		if err := r.expect("target"); err != nil {
			return nil, err
		}
		start = r.off
		target, err := r.str(MaxTargetLen, "symlink target")
		if err != nil {
			return nil, err
		}
		if target == "" {
			return nil, r.errAt(start, "empty symlink target")
		}
		if strings.IndexByte(target, 0) >= 0 {
			return nil, r.errAt(start, "symlink target contains a NUL byte")
		}
		if err := r.expect(")"); err != nil {
			return nil, err
		}
		return &Header{Path: p, Type: TypeSymlink, LinkTarget: target}, nil
	case "directory":
		if len(r.stack) > MaxDepth {
			return nil, r.errAt(start, "directories nested deeper than %d", MaxDepth)
		}
		r.stack = append(r.stack, dirFrame{path: p})
		return &Header{Path: p, Type: TypeDirectory}, nil
	}
	return nil, r.errAt(start, "unknown node type %q", kind)
}

// finish consumes the end of a regular file or symlink entry.
func (r *Reader) finish(h *Header) error {
	r.where = h.Path
	switch h.Type {
	case TypeDirectory:
		return nil
	case TypeRegular:
		if r.remaining > 0 {
			if _, err := io.CopyN(io.Discard, onlyReader{r}, r.remaining); err != nil {
				if r.err != nil {
					return r.err
				}
				return err
			}
		}
		if err := r.padding(h.Size); err != nil {
			return err
		}
		if err := r.expect(")"); err != nil {
			return err
		}
	}
	if len(r.stack) > 0 { // an entry of a directory: close the entry
		return r.expect(")")
	}
	return nil
}

// atEnd checks that nothing follows the root node.
func (r *Reader) atEnd() error {
	r.where = ""
	_, err := r.br.ReadByte()
	if err == nil {
		return r.errAt(r.off, "trailing data after the root node")
	}
	if err == io.EOF {
		return io.EOF
	}
	return fmt.Errorf("reading NAR after byte %d: %w", r.off, err)
}

type onlyReader struct{ r *Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func (r *Reader) u64() (uint64, error) {
	var b [8]byte
	if err := r.full(b[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// str reads a string of at most max bytes, and its zero padding.
func (r *Reader) str(max int, what string) (string, error) {
	start := r.off
	n, err := r.u64()
	if err != nil {
		return "", err
	}
	if n > uint64(max) {
		return "", r.errAt(start, "%s of %d bytes is longer than %d", what, n, max)
	}
	b := make([]byte, n)
	if err := r.full(b); err != nil {
		return "", err
	}
	if err := r.padding(int64(n)); err != nil {
		return "", err
	}
	return string(b), nil
}

func (r *Reader) expect(tok string) error {
	start := r.off
	s, err := r.str(maxTokenLen, "token")
	if err != nil {
		var fe *FormatError
		if errors.As(err, &fe) && fe.Err == nil {
			return r.errAt(start, "expected %q", tok)
		}
		return err
	}
	if s != tok {
		if r.where == "" && tok == Magic {
			return r.errAt(start, "not a NAR (bad magic %q)", s)
		}
		return r.errAt(start, "expected %q, got %q", tok, s)
	}
	return nil
}

func (r *Reader) padding(n int64) error {
	p := int((8 - n%8) % 8)
	if p == 0 {
		return nil
	}
	var b [8]byte
	start := r.off
	if err := r.full(b[:p]); err != nil {
		return err
	}
	for _, c := range b[:p] {
		if c != 0 {
			return r.errAt(start, "non-zero padding")
		}
	}
	return nil
}

func (r *Reader) full(b []byte) error {
	start := r.off
	n, err := io.ReadFull(r.br, b)
	r.off += int64(n)
	if err != nil {
		return r.readErr(start, err)
	}
	return nil
}

func (r *Reader) readErr(start int64, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return &FormatError{Path: r.where, Offset: start, Msg: "truncated", Err: io.ErrUnexpectedEOF}
	}
	where := "NAR"
	if r.where != "" {
		where = fmt.Sprintf("NAR entry %q", r.where)
	}
	return fmt.Errorf("reading %s at byte %d: %w", where, start, err)
}

func (r *Reader) errAt(off int64, format string, args ...any) error {
	return &FormatError{Path: r.where, Offset: off, Msg: fmt.Sprintf(format, args...)}
}

// checkName returns why name cannot be an entry name, or "".
func checkName(name string) string {
	switch {
	case name == "":
		return "empty entry name"
	case name == "." || name == "..":
		return fmt.Sprintf("entry name %q", name)
	case strings.IndexByte(name, '/') >= 0:
		return fmt.Sprintf("entry name %q contains '/'", name)
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Sprintf("entry name %q contains a NUL byte", name)
	case len(name) > MaxNameLen:
		return fmt.Sprintf("entry name of %d bytes is longer than %d", len(name), MaxNameLen)
	}
	return ""
}

func join(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// Validate reads a whole NAR strictly and returns its size in bytes. A nil
// error means r held exactly one canonical NAR and nothing after it.
func Validate(r io.Reader) (int64, error) {
	return Copy(io.Discard, r)
}

// Copy copies the NAR in src to dst while validating it strictly, and
// returns the NAR's size. A nil error means the bytes written to dst are
// exactly one canonical NAR. On error dst may have received part of the
// input (up to one buffer beyond the point of failure).
func Copy(dst io.Writer, src io.Reader) (int64, error) {
	nr := NewReader(io.TeeReader(src, dst))
	for {
		h, err := nr.Next()
		if err == io.EOF {
			return nr.Offset(), nil
		}
		if err != nil {
			return nr.Offset(), err
		}
		if h.Type == TypeRegular {
			if _, err := io.Copy(io.Discard, onlyReader{nr}); err != nil {
				return nr.Offset(), err
			}
		}
	}
}
