package localstore

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// A PathLock is a held lock on a store path, compatible with Nix's
// PathLocks: an exclusive flock on `<real path>.lock`.
type PathLock struct {
	f *os.File
}

// TryLock takes the lock of the store path whose real location is
// realPath without waiting, and returns nil when another process (Nix, or
// another nix-init) holds it.
//
// As in Nix, a lock file whose size is not zero was deleted by its last
// holder after it finished (it writes a byte, then unlinks it); holding a
// lock on it protects nothing, so it is opened again.
func TryLock(realPath string) (*PathLock, error) {
	name := realPath + ".lock"
	for range staleRetries {
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open lock file: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if err == unix.EWOULDBLOCK {
				return nil, nil
			}
			return nil, &os.PathError{Op: "lock", Path: name, Err: err}
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock file: %w", err)
		}
		if st.Size() == 0 {
			return &PathLock{f: f}, nil
		}
		f.Close() // stale: its holder deleted it after use
	}
	// Holders unlink the file before they mark it: one that stays marked
	// at its path was not left by Nix or by us.
	return nil, fmt.Errorf("lock file %s is marked deleted but is still there: remove it", name)
}

// staleRetries bounds how often TryLock opens a lock file again that was
// deleted under it.
const staleRetries = 100

// Unlock releases the lock. With remove, it first deletes the lock file
// as Nix does, marking it stale for processes that opened it and wait for
// it (they then open the path's lock file again). nix-init removes it on
// every exit path, valid or not: the file protects nothing once released,
// and one left per failed path would pile up in the store. Without remove
// it keeps the file, as Nix does after a failed import.
//
// A file that cannot be unlinked is not marked: a marked file that stays
// at its path would make every later TryLock fail.
func (l *PathLock) Unlock(remove bool) {
	if l == nil || l.f == nil {
		return
	}
	if remove {
		if err := os.Remove(l.f.Name()); err == nil {
			l.f.Write([]byte("d"))
		}
	}
	l.f.Close()
	l.f = nil
}
