// Package gcroots manages the indirect GC roots that keep a sandbox's
// closures alive: one symlink per root in the sandbox (by default `.gc/NAME`),
// registered with the store so that Nix's garbage collector follows it.
//
// When the sandbox is deleted the links go with it and the next GC may collect
// the closures, unless another sandbox roots them. This package never deletes
// anything from the store and never writes into the store's state directory
// itself: registration goes through the daemon (AddIndirectRoot).
package gcroots

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixbase32"
	"golang.org/x/sys/unix"
)

// Registrar registers an indirect root: the store records the link's absolute
// path so that its GC follows it. A store connection implements it.
type Registrar interface {
	AddIndirectRoot(ctx context.Context, link string) error
}

// ValidName reports whether name can name a root link: one path component,
// not hidden, so that it cannot escape the root directory or collide with the
// temporary names used while creating links.
func ValidName(name string) error {
	switch {
	case name == "":
		return errors.New("root name is empty")
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("root name %q contains '/' or NUL", name)
	case strings.HasPrefix(name, "."):
		return fmt.Errorf("root name %q starts with '.'", name)
	}
	return nil
}

// Add creates dir/name -> storePath atomically (a temporary link renamed into
// place, so a reader never sees a half-made root and a crash leaves either the
// old link or the new one) and registers it with reg. An existing link is
// replaced; anything else at that name is refused rather than destroyed.
// The directory is opened as openDir says, so that no link is ever made
// through a symlink planted in the sandbox. It returns the absolute path of
// the link, which is what is registered.
func Add(ctx context.Context, reg Registrar, dir, name, storePath string) (string, error) {
	if err := ValidName(name); err != nil {
		return "", fmt.Errorf("add gc root in %s: %w", dir, err)
	}
	fd, abs, err := openDir(dir, true)
	if err != nil {
		return "", fmt.Errorf("add gc root %s: %w", name, err)
	}
	defer unix.Close(fd)
	link := filepath.Join(abs, name)
	var st unix.Stat_t
	if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return "", fmt.Errorf("add gc root %s: exists and is not a symlink; remove it by hand", link)
	}
	if err := symlinkAtomic(fd, storePath, name); err != nil {
		return "", fmt.Errorf("add gc root %s -> %s: %w", link, storePath, err)
	}
	if err := reg.AddIndirectRoot(ctx, link); err != nil {
		return "", fmt.Errorf("register gc root %s -> %s: %w", link, storePath, err)
	}
	return link, nil
}

// symlinkAtomic makes name -> target in the directory dirfd, relative to the
// descriptor so that nothing is resolved again by path.
func symlinkAtomic(dirfd int, target, name string) error {
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	tmp := fmt.Sprintf(".%s.tmp-%d-%s", name, os.Getpid(), hex.EncodeToString(rnd[:]))
	if err := unix.Symlinkat(target, dirfd, tmp); err != nil {
		return &os.LinkError{Op: "symlink", Old: target, New: tmp, Err: err}
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, name); err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		return &os.LinkError{Op: "rename", Old: tmp, New: name, Err: err}
	}
	return nil
}

// openDir opens the root directory dir and returns its descriptor and
// absolute path. The sandbox is writable by the job's own processes (and by
// whoever else can write it), so a component there may be a planted symlink
// leading anywhere: every component of a relative dir (".gc", the default)
// is opened from the working directory with O_NOFOLLOW and must be a real
// directory; of an absolute dir, which the operator chose, only the last
// component is. With create, missing components are made (mode 0755) and
// each must be owned by this process's user, so that no one else can swap
// the links in it. Without create, a missing dir fails with fs.ErrNotExist.
func openDir(dir string, create bool) (int, string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return -1, "", fmt.Errorf("%s: %w", dir, err)
	}
	base, comps := ".", strings.Split(filepath.Clean(dir), string(filepath.Separator))
	if filepath.IsAbs(dir) {
		base, comps = filepath.Dir(abs), []string{filepath.Base(abs)}
		if create {
			if err := os.MkdirAll(base, 0o755); err != nil {
				return -1, "", err
			}
		}
	}
	fd, err := unix.Open(base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", &fs.PathError{Op: "open", Path: base, Err: err}
	}
	walked, _ := filepath.Abs(base) // for messages
	for _, c := range comps {
		if c == "." {
			continue
		}
		walked = filepath.Join(walked, c)
		next, err := openComponent(fd, c, walked, create)
		unix.Close(fd)
		if err != nil {
			return -1, "", err
		}
		fd = next
	}
	return fd, abs, nil
}

// openComponent opens the directory name in dirfd (path names it in
// messages) without following a symlink.
func openComponent(dirfd int, name, path string, create bool) (int, error) {
	if create {
		if err := unix.Mkdirat(dirfd, name, 0o755); err != nil && err != unix.EEXIST {
			return -1, &fs.PathError{Op: "mkdir", Path: path, Err: err}
		}
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		var st unix.Stat_t
		switch {
		case err == unix.ENOENT:
			return -1, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
		case unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK:
			return -1, fmt.Errorf("%s is a symlink: refusing to follow it (root links stay in the sandbox); remove it", path)
		case err == unix.ENOTDIR:
			return -1, fmt.Errorf("%s is not a directory; remove it", path)
		}
		return -1, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	if create {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, &fs.PathError{Op: "stat", Path: path, Err: err}
		}
		if uid := os.Geteuid(); int(st.Uid) != uid {
			unix.Close(fd)
			return -1, fmt.Errorf("%s is owned by uid %d, not by this run's user (uid %d): refusing to make root links in it", path, st.Uid, uid)
		}
	}
	return fd, nil
}

// AutoName is the name Nix gives the registration of an indirect root under
// <stateDir>/gcroots/auto: nix32(sha1(absolute link path)).
func AutoName(link string) string {
	sum := sha1.Sum([]byte(link))
	return nixbase32.EncodeToString(sum[:])
}

// Root is one link in a root directory as found on disk.
type Root struct {
	Name   string // file name in the root directory
	Link   string // absolute path of the link
	Target string // where it points (a store path for a root made by Add)
	// Stray is set for an entry that is not a symlink into the store: Nix's
	// GC ignores it, so it roots nothing.
	Stray bool
}

// List returns the roots in dir, sorted by name. A missing dir has no roots.
// Leftover temporary links of an interrupted Add are skipped. The dir is
// opened as by Add, without following symlinks, so that it never lists (as
// this sandbox's) roots that live elsewhere; it may belong to another user.
func List(dir string) ([]Root, error) {
	fd, abs, err := openDir(dir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list gc roots: %w", err)
	}
	f := os.NewFile(uintptr(fd), abs)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("list gc roots in %s: %w", abs, err)
	}
	var roots []Root
	for _, name := range names {
		if strings.HasPrefix(name, ".") {
			continue
		}
		r := Root{Name: name, Link: filepath.Join(abs, name)}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if err == unix.ENOENT {
				continue // removed since it was listed
			}
			return nil, fmt.Errorf("list gc roots: %w", &fs.PathError{Op: "lstat", Path: r.Link, Err: err})
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			r.Stray = true
			roots = append(roots, r)
			continue
		}
		target, err := readlinkat(fd, name)
		if err != nil {
			return nil, fmt.Errorf("list gc roots: %w", &fs.PathError{Op: "readlink", Path: r.Link, Err: err})
		}
		r.Target = target
		r.Stray = !strings.HasPrefix(target, "/nix/store/")
		roots = append(roots, r)
	}
	sort.Slice(roots, func(i, j int) bool { return roots[i].Name < roots[j].Name })
	return roots, nil
}

// readlinkat reads the link name in dirfd, whatever its length.
func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// Registered reports whether link is registered under stateDir/gcroots/auto,
// which is where the daemon records indirect roots. stateDir is the store's
// state directory (/nix/var/nix, or ROOT/nix/var/nix for a chroot store).
func Registered(stateDir, link string) (bool, error) {
	auto := filepath.Join(stateDir, "gcroots", "auto", AutoName(link))
	target, err := os.Readlink(auto)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("check registration of %s: %w", link, err)
	}
	return target == link, nil
}
