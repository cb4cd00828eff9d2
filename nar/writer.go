package nar

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

type wdir struct {
	path    string
	last    string
	hasLast bool
}

// A Writer writes a canonical NAR: WriteHeader for each entry in NAR order
// (the root first, a directory before its entries, entries of a directory
// in increasing byte order of name), Write for a regular file's contents,
// then Close. It refuses anything that would make a NAR the Reader rejects.
// Output is buffered; Close flushes it (but does not close the underlying
// writer). Errors are sticky.
type Writer struct {
	bw        *bufio.Writer
	err       error
	started   bool
	closed    bool
	stack     []wdir
	cur       *Header // the regular file being written, if any
	remaining int64
	n         int64
}

// NewWriter returns a Writer writing a NAR to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{bw: bufio.NewWriterSize(w, bufSize)}
}

// Size returns the number of NAR bytes produced so far.
func (w *Writer) Size() int64 { return w.n }

// WriteHeader starts a new entry. For a regular file, exactly h.Size bytes
// of contents must follow through Write.
func (w *Writer) WriteHeader(h *Header) error {
	if w.err != nil {
		return w.err
	}
	if err := w.writeHeader(h); err != nil {
		w.err = err
		return err
	}
	return nil
}

func (w *Writer) writeHeader(h *Header) error {
	if w.closed {
		return errors.New("nar: WriteHeader after Close")
	}
	if err := w.finishFile(); err != nil {
		return err
	}
	if !w.started {
		if h.Path != "/" {
			return fmt.Errorf("nar: the first entry must be the root \"/\", not %q", h.Path)
		}
		w.started = true
		w.str(Magic)
		return w.node(h, false)
	}
	if len(w.stack) == 0 {
		return fmt.Errorf("nar: entry %q after the root node was complete", h.Path)
	}
	if !strings.HasPrefix(h.Path, "/") || path.Clean(h.Path) != h.Path || h.Path == "/" {
		return fmt.Errorf("nar: bad entry path %q", h.Path)
	}
	parent, name := path.Split(h.Path)
	if parent != "/" {
		parent = strings.TrimSuffix(parent, "/")
	}
	for len(w.stack) > 0 && w.stack[len(w.stack)-1].path != parent {
		w.closeDir()
	}
	if len(w.stack) == 0 {
		return fmt.Errorf("nar: entry %q is not in the directory being written (entries out of order?)", h.Path)
	}
	if msg := checkName(name); msg != "" {
		return fmt.Errorf("nar: entry %q: %s", h.Path, msg)
	}
	top := &w.stack[len(w.stack)-1]
	if top.hasLast && name <= top.last {
		return fmt.Errorf("nar: entry %q after %q: names must be unique and in increasing byte order", h.Path, top.last)
	}
	top.last, top.hasLast = name, true
	w.str("entry")
	w.str("(")
	w.str("name")
	w.str(name)
	w.str("node")
	return w.node(h, true)
}

func (w *Writer) node(h *Header, entry bool) error {
	w.str("(")
	w.str("type")
	switch h.Type {
	case TypeRegular:
		if h.Size < 0 {
			return fmt.Errorf("nar: entry %q: negative size", h.Path)
		}
		w.str("regular")
		if h.Executable {
			w.str("executable")
			w.str("")
		}
		w.str("contents")
		w.u64(uint64(h.Size))
		hc := *h
		w.cur = &hc
		w.remaining = h.Size
	case TypeSymlink:
		if h.LinkTarget == "" || len(h.LinkTarget) > MaxTargetLen || strings.IndexByte(h.LinkTarget, 0) >= 0 {
			return fmt.Errorf("nar: entry %q: invalid symlink target %q", h.Path, h.LinkTarget)
		}
		w.str("symlink")
		w.str("target")
		w.str(h.LinkTarget)
		w.str(")")
		if entry {
			w.str(")")
		}
	case TypeDirectory:
		if len(w.stack) > MaxDepth {
			return fmt.Errorf("nar: entry %q: directories nested deeper than %d", h.Path, MaxDepth)
		}
		w.str("directory")
		w.stack = append(w.stack, wdir{path: h.Path})
	default:
		return fmt.Errorf("nar: entry %q: unknown type %v", h.Path, h.Type)
	}
	return w.err
}

// Write writes contents of the current regular file.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.cur == nil {
		w.err = errors.New("nar: Write outside a regular file")
		return 0, w.err
	}
	if int64(len(p)) > w.remaining {
		w.err = fmt.Errorf("nar: entry %q: more than the %d bytes of its header", w.cur.Path, w.cur.Size)
		return 0, w.err
	}
	n, err := w.bw.Write(p)
	w.n += int64(n)
	w.remaining -= int64(n)
	if err != nil {
		w.err = err
	}
	return n, err
}

func (w *Writer) finishFile() error {
	if w.cur == nil {
		return nil
	}
	if w.remaining != 0 {
		return fmt.Errorf("nar: entry %q: %d of its %d bytes missing", w.cur.Path, w.remaining, w.cur.Size)
	}
	w.pad(w.cur.Size)
	w.str(")")
	if len(w.stack) > 0 {
		w.str(")")
	}
	w.cur = nil
	return w.err
}

func (w *Writer) closeDir() {
	w.stack = w.stack[:len(w.stack)-1]
	w.str(")")
	if len(w.stack) > 0 {
		w.str(")")
	}
}

// Close completes the NAR and flushes it. It does not close the underlying
// writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return nil
	}
	if !w.started {
		w.err = errors.New("nar: Close before the root entry")
		return w.err
	}
	if err := w.finishFile(); err != nil {
		w.err = err
		return err
	}
	for len(w.stack) > 0 {
		w.closeDir()
	}
	w.closed = true
	if w.err == nil {
		w.err = w.bw.Flush()
	}
	return w.err
}

func (w *Writer) u64(v uint64) {
	if w.err != nil {
		return
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	n, err := w.bw.Write(b[:])
	w.n += int64(n)
	w.err = err
}

func (w *Writer) str(s string) {
	w.u64(uint64(len(s)))
	if w.err != nil {
		return
	}
	n, err := w.bw.WriteString(s)
	w.n += int64(n)
	w.err = err
	w.pad(int64(len(s)))
}

var zeros [8]byte

func (w *Writer) pad(n int64) {
	if p := (8 - n%8) % 8; p != 0 && w.err == nil {
		m, err := w.bw.Write(zeros[:p])
		w.n += int64(m)
		w.err = err
	}
}

// DumpPath writes the file tree at fsPath as a NAR to w, byte for byte as
// `nix-store --dump` does: entries sorted by name, a regular file is
// executable when its owner-execute bit is set, symlinks are stored, not
// followed, and nothing else (times, owners, other modes) is recorded.
// Other file types (sockets, devices, FIFOs) are errors.
func DumpPath(w io.Writer, fsPath string) error {
	nw := NewWriter(w)
	if err := dump(nw, fsPath, "/"); err != nil {
		return err
	}
	return nw.Close()
}

func dump(nw *Writer, fsPath, narPath string) error {
	fi, err := os.Lstat(fsPath)
	if err != nil {
		return fmt.Errorf("nar: dump: %w", err)
	}
	switch m := fi.Mode(); {
	case m.IsRegular():
		f, err := os.Open(fsPath)
		if err != nil {
			return fmt.Errorf("nar: dump: %w", err)
		}
		defer f.Close()
		size := fi.Size()
		if err := nw.WriteHeader(&Header{Path: narPath, Type: TypeRegular, Executable: m&0o100 != 0, Size: size}); err != nil {
			return err
		}
		n, err := io.Copy(nw, io.LimitReader(f, size))
		if err != nil {
			return fmt.Errorf("nar: dump %s: %w", fsPath, err)
		}
		if n != size {
			return fmt.Errorf("nar: dump %s: file changed size while being read (%d bytes, expected %d)", fsPath, n, size)
		}
		return nil
	case m.IsDir():
		if err := nw.WriteHeader(&Header{Path: narPath, Type: TypeDirectory}); err != nil {
			return err
		}
		entries, err := os.ReadDir(fsPath) // sorted by name, byte order
		if err != nil {
			return fmt.Errorf("nar: dump: %w", err)
		}
		for _, e := range entries {
			if err := dump(nw, fsPath+"/"+e.Name(), join(narPath, e.Name())); err != nil {
				return err
			}
		}
		return nil
	case m&os.ModeSymlink != 0:
		target, err := os.Readlink(fsPath)
		if err != nil {
			return fmt.Errorf("nar: dump: %w", err)
		}
		return nw.WriteHeader(&Header{Path: narPath, Type: TypeSymlink, LinkTarget: target})
	default:
		return fmt.Errorf("nar: dump %s: unsupported file type %v", fsPath, m.Type())
	}
}
