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
// It returns the absolute path of the link.
func Add(ctx context.Context, reg Registrar, dir, name, storePath string) (string, error) {
	if err := ValidName(name); err != nil {
		return "", fmt.Errorf("add gc root in %s: %w", dir, err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("add gc root %s in %s: %w", name, dir, err)
	}
	link := filepath.Join(abs, name)
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", fmt.Errorf("add gc root %s: %w", link, err)
	}
	if fi, err := os.Lstat(link); err == nil && fi.Mode()&fs.ModeSymlink == 0 {
		return "", fmt.Errorf("add gc root %s: exists and is not a symlink; remove it by hand", link)
	}
	if err := symlinkAtomic(storePath, link); err != nil {
		return "", fmt.Errorf("add gc root %s -> %s: %w", link, storePath, err)
	}
	if err := reg.AddIndirectRoot(ctx, link); err != nil {
		return "", fmt.Errorf("register gc root %s -> %s: %w", link, storePath, err)
	}
	return link, nil
}

func symlinkAtomic(target, link string) error {
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(link), fmt.Sprintf(".%s.tmp-%d-%s", filepath.Base(link), os.Getpid(), hex.EncodeToString(rnd[:])))
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
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
// Leftover temporary links of an interrupted Add are skipped.
func List(dir string) ([]Root, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("list gc roots in %s: %w", dir, err)
	}
	entries, err := os.ReadDir(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list gc roots in %s: %w", abs, err)
	}
	var roots []Root
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		r := Root{Name: e.Name(), Link: filepath.Join(abs, e.Name())}
		if e.Type()&fs.ModeSymlink == 0 {
			r.Stray = true
			roots = append(roots, r)
			continue
		}
		target, err := os.Readlink(r.Link)
		if err != nil {
			return nil, fmt.Errorf("list gc roots: read link %s: %w", r.Link, err)
		}
		r.Target = target
		r.Stray = !strings.HasPrefix(target, "/nix/store/")
		roots = append(roots, r)
	}
	sort.Slice(roots, func(i, j int) bool { return roots[i].Name < roots[j].Name })
	return roots, nil
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
