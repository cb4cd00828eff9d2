package localstore

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nix-aurora/nix-aurora/store"
)

// Registration is what makes an unpacked path valid.
type Registration struct {
	Path       string   // /nix/store/<hash>-<name>
	NarHash    string   // any form Nix parses: "sha256:<nix32>", hex...
	NarSize    uint64   //
	Deriver    string   // full path, or ""
	References []string // full paths, each valid already or in the same batch
}

// Store is a local store this process owns.
type Store struct {
	// Dir is where the store's paths really are: /nix/store, or
	// <root>/nix/store for a chroot store.
	Dir string
	// NixStore is the nix-store program ("" means from PATH).
	NixStore string
	// StoreArg is passed to nix-store as --store ("" means the default
	// local store).
	StoreArg string
	// Env is added to nix-store's environment (this process's, without
	// NIX_REMOTE: the store is chosen by StoreArg alone).
	Env []string
}

// Writable reports whether this process may create paths in the store
// (the store's directory exists once Nix has opened the store).
func (s *Store) Writable() bool { return unix.Access(s.Dir, unix.W_OK) == nil }

// RealPath is where storePath's files are.
func (s *Store) RealPath(storePath string) string {
	return filepath.Join(s.Dir, filepath.Base(storePath))
}

// Register makes paths valid, in one transaction: all of them or none.
// Each must have been unpacked with Unpack from a NAR whose hash is its
// NarHash, and be locked by the caller.
//
// It runs `nix-store --load-db`, which registers what it reads without
// touching the files (they are already canonical, and Nix's
// --register-validity would canonicalise the logical /nix/store path even
// for a chroot store). The store keeps no signatures for these paths: they
// were checked here, and a store that trusts its owner records none for
// the paths its owner adds.
func (s *Store) Register(ctx context.Context, regs []Registration) error {
	if len(regs) == 0 {
		return nil
	}
	var in bytes.Buffer
	for _, r := range regs {
		in.WriteString(r.Path + "\n" + r.NarHash + "\n" + strconv.FormatUint(r.NarSize, 10) + "\n" + r.Deriver + "\n")
		in.WriteString(strconv.Itoa(len(r.References)) + "\n")
		for _, ref := range r.References {
			in.WriteString(ref + "\n")
		}
	}
	prog := s.NixStore
	if prog == "" {
		prog = "nix-store"
	}
	storeArg := s.StoreArg
	if storeArg == "" {
		storeArg = "local"
	}
	cmd := exec.CommandContext(ctx, prog, "--store", storeArg, "--load-db")
	cmd.Stdin = &in
	cmd.Env = append(withoutNixRemote(os.Environ()), s.Env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(store.CleanMessage(stderr.String()))
		if msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		return fmt.Errorf("register %d paths in %s (%s --load-db): %w", len(regs), s.Dir, prog, err)
	}
	return nil
}

func withoutNixRemote(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "NIX_REMOTE=") {
			out = append(out, kv)
		}
	}
	return out
}
