package realise

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// spool is a downloaded, checked NAR waiting for its import: in chunks of
// memory, or in a temporary file.
type spool struct {
	chunks [][]byte // each of spoolChunk bytes' capacity
	room   int      // chunks the spool may still take
	file   *os.File
}

// memoryChunks is the memory budget in chunks.
func (d *Direct) memoryChunks() int64 {
	budget := d.Memory
	if budget <= 0 {
		budget = DefaultDirectMemory
	}
	return max(budget/spoolChunk, 1)
}

// spoolChunk is the unit of the memory budget. Chunks are recycled, so
// that a cold closure's hundred megabytes do not become garbage: with a
// fresh buffer per NAR, the collector ran every millisecond or two under
// the heap limit, and took a sixth of nix-init's CPU.
const spoolChunk = 16 << 10

// spoolChunks are the free chunks. Not a sync.Pool: under nix-init's heap
// limit the collector runs often, and each cycle would empty it. The
// memory budget bounds how many chunks exist.
var spoolChunks struct {
	sync.Mutex
	free []*[spoolChunk]byte
}

func getChunk() []byte {
	spoolChunks.Lock()
	defer spoolChunks.Unlock()
	if n := len(spoolChunks.free); n > 0 {
		c := spoolChunks.free[n-1]
		spoolChunks.free = spoolChunks.free[:n-1]
		return c[:0]
	}
	return new([spoolChunk]byte)[:0]
}

func putChunks(cs [][]byte) {
	spoolChunks.Lock()
	defer spoolChunks.Unlock()
	for _, c := range cs {
		spoolChunks.free = append(spoolChunks.free, (*[spoolChunk]byte)(c[:spoolChunk]))
	}
}

// chunksFor is how many chunks a NAR of n bytes takes.
func chunksFor(n uint64) int64 { return int64((n + spoolChunk - 1) / spoolChunk) }

func (sp *spool) Write(p []byte) (int, error) {
	if sp.file != nil {
		return sp.file.Write(p)
	}
	n := len(p)
	for len(p) > 0 {
		last := len(sp.chunks) - 1
		if last < 0 || len(sp.chunks[last]) == spoolChunk {
			if sp.room == 0 {
				return n - len(p), errors.New("the NAR is larger than its narinfo says")
			}
			sp.room--
			sp.chunks = append(sp.chunks, getChunk())
			last++
		}
		c := copy(sp.chunks[last][len(sp.chunks[last]):spoolChunk], p)
		sp.chunks[last] = sp.chunks[last][:len(sp.chunks[last])+c]
		p = p[c:]
	}
	return n, nil
}

// reader reads the NAR from its start.
func (sp *spool) reader() io.Reader {
	if sp.file != nil {
		return sp.file
	}
	rs := make([]io.Reader, len(sp.chunks))
	for i, c := range sp.chunks {
		rs[i] = bytes.NewReader(c)
	}
	return io.MultiReader(rs...)
}

// discard recycles the memory or removes the file.
func (sp *spool) discard() {
	putChunks(sp.chunks)
	sp.chunks = nil
	if sp.file != nil {
		sp.file.Close() // nameless: closing frees it
	}
}

// anonymousFile opens a read-write file in dir that has no name, so that
// nothing is left behind however the process ends (a SIGKILL included):
// O_TMPFILE where the filesystem supports it, else a file unlinked right
// after it is created. The open descriptor is the only way to it.
func anonymousFile(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), filepath.Join(dir, "nix-init-spool.nar (deleted)")), nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
		return nil, &os.PathError{Op: "open O_TMPFILE", Path: dir, Err: err}
	}
	// No O_TMPFILE here (EISDIR: a kernel that predates it).
	f, err := os.CreateTemp(dir, "nix-init-*.nar")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("unlink temporary file: %w", err)
	}
	return f, nil
}
