package localstore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/nix-aurora/nix-aurora/nar"
)

// mtimeStore is the modification time of every file in the store (Nix's
// canonical form: one second after the epoch).
var mtimeStore = []unix.Timespec{{Sec: 1}, {Sec: 1}}

// Readers and copy buffers are reused: with a fresh set per NAR, a cold
// closure's hundreds of NARs were most of nix-init's garbage, and the
// collector ran several times a second under its heap limit. Free lists
// rather than sync.Pools, which every collection empties.
var (
	freeReaders = make(chan *nar.Reader, 64)
	freeBuffers = make(chan *[32 << 10]byte, 64)
)

func getReader(src io.Reader) *nar.Reader {
	select {
	case r := <-freeReaders:
		r.Reset(src)
		return r
	default:
		return nar.NewReader(src)
	}
}

func putReader(r *nar.Reader) {
	r.Reset(nil)
	select {
	case freeReaders <- r:
	default:
	}
}

func getBuffer() *[32 << 10]byte {
	select {
	case b := <-freeBuffers:
		return b
	default:
		return new([32 << 10]byte)
	}
}

func putBuffer(b *[32 << 10]byte) {
	select {
	case freeBuffers <- b:
	default:
	}
}

// Unpack reads one NAR from src strictly (package nar) and creates it at
// target, which must not exist, in Nix's canonical form. It returns the
// NAR's size. On any error, a read error of src included (a hash that did
// not match), it removes what it created.
//
// Nothing is followed or overwritten: every entry is created exclusively
// and without following symlinks, and the strict reader has already
// refused names such as ".." or "a/b", duplicates and unsorted entries.
func Unpack(target string, src io.Reader) (int64, error) {
	r := getReader(src)
	defer putReader(r)
	var dirs []string // in creation order: parents before children
	created := false
	fail := func(err error) (int64, error) {
		if created {
			if rerr := RemoveAll(target); rerr != nil {
				err = fmt.Errorf("%w (and removing the partial %s: %v)", err, target, rerr)
			}
		}
		return r.Offset(), err
	}
	buf := getBuffer()
	defer putBuffer(buf)
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fail(err)
		}
		p := target
		if h.Path != "/" {
			p = target + h.Path
		}
		switch h.Type {
		case nar.TypeDirectory:
			err = os.Mkdir(p, 0o755) // made read-only once complete
			if err == nil {
				dirs = append(dirs, p)
			}
		case nar.TypeSymlink:
			err = os.Symlink(h.LinkTarget, p)
			if err == nil {
				err = unix.UtimesNanoAt(unix.AT_FDCWD, p, mtimeStore, unix.AT_SYMLINK_NOFOLLOW)
			}
		case nar.TypeRegular:
			err = writeFile(p, h, r, buf[:])
		default:
			err = fmt.Errorf("unknown entry type %v", h.Type)
		}
		created = created || err == nil
		if err != nil {
			return fail(fmt.Errorf("unpack %s: %w", p, err))
		}
	}
	// Children before parents: a directory's mode and mtime are final
	// only when nothing more is created in it.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(dirs[i], 0o555); err != nil {
			return fail(fmt.Errorf("unpack %s: %w", dirs[i], err))
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, dirs[i], mtimeStore, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fail(fmt.Errorf("unpack %s: %w", dirs[i], err))
		}
	}
	return r.Offset(), nil
}

// writeFile creates a regular file with h's contents, read from r.
func writeFile(p string, h *nar.Header, r *nar.Reader, buf []byte) error {
	mode := uint32(0o444)
	if h.Executable {
		mode = 0o555
	}
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if err != nil {
		return &fs.PathError{Op: "create", Path: p, Err: err}
	}
	f := os.NewFile(uintptr(fd), p)
	// The mode given to open is cut by the umask (077 made 0400): Nix's
	// modes are exact whatever it is.
	err = unix.Fchmod(fd, mode)
	var n int64
	if err == nil {
		n, err = io.CopyBuffer(fileWriter{f}, fileReader{r}, buf)
	}
	if err == nil && n != h.Size {
		err = io.ErrUnexpectedEOF
	}
	if err == nil {
		err = unix.Futimes(fd, []unix.Timeval{{Sec: 1}, {Sec: 1}})
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// fileReader and fileWriter hide ReadFrom and WriteTo, so that CopyBuffer
// uses its buffer (os.File's ReadFrom would try splice and sendfile on a
// reader that is neither, then fall back to a small buffer).
type fileReader struct{ r *nar.Reader }

func (f fileReader) Read(p []byte) (int, error) { return f.r.Read(p) }

type fileWriter struct{ f *os.File }

func (f fileWriter) Write(p []byte) (int, error) { return f.f.Write(p) }

// RemoveAll removes path and everything below it, as Nix's deletePath does
// for a store path: read-only directories (the canonical form) are made
// writable first. A path that does not exist is not an error.
func RemoveAll(path string) error {
	err := os.RemoveAll(path)
	if err == nil || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
	return os.RemoveAll(path)
}
