package localstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

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
	// Lock is the caller's lock of Path (nil for none): the registering
	// process holds it too, until it exits.
	Lock *PathLock
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

// A Registrar registers batches of paths one after another, each in its
// own transaction. Prepare starts the next batch's nix-store ahead of
// time, so that its start (about 20 ms, the same C++ binary as every Nix
// command) overlaps the wait for the batch.
//
// A registration and the locks of its paths live and die together. Each
// nix-store inherits the lock files of its batch (flocks belong to the
// open file, so they stay held while any process has it open), and is
// killed when this process dies (Pdeathsig). Without the first, a
// nix-store that outlived a killed nix-init (waiting for a busy database)
// could commit after another run took the locks, found the paths invalid
// and removed their files: valid paths with nothing on disk. Without the
// second, such an orphan would keep the locks (and the database) for as
// long as the database stays busy.
type Registrar struct {
	s     *Store
	ctx   context.Context
	spare *loadDB
}

// NewRegistrar returns a Registrar whose processes live within ctx.
func (s *Store) NewRegistrar(ctx context.Context) *Registrar {
	return &Registrar{s: s, ctx: ctx}
}

// Prepare starts the process of the next batch, if none is waiting,
// holding locks: those of every path the batch may have. A process that
// cannot start is reported by the next Register.
func (r *Registrar) Prepare(locks []*PathLock) {
	if r.spare == nil {
		r.spare, _ = r.s.startLoadDB(r.ctx, locks)
	}
}

// Register makes regs valid in one transaction: all of them or none, through
// the prepared process if there is one. Each must have been unpacked with
// Unpack from a NAR whose hash is its NarHash, and be locked by the caller
// (its Lock). A prepared process that does not hold every Lock of regs is
// ended unused, and another one started.
//
// An error means that the outcome is unknown when the process was killed
// (the context, or this process's death): the caller must ask the store
// whether the paths are valid before it removes any.
//
// It runs `nix-store --load-db`, which registers what it reads without
// touching the files (they are already canonical, and Nix's
// --register-validity would canonicalise the logical /nix/store path even
// for a chroot store). Its input has no place for signatures or a content
// address: a caller that has signatures adds them afterwards (the daemon
// protocol's AddSignatures).
func (r *Registrar) Register(regs []Registration) error {
	if len(regs) == 0 {
		return nil
	}
	var locks []*PathLock
	for _, reg := range regs {
		if reg.Lock != nil {
			locks = append(locks, reg.Lock)
		}
	}
	l := r.spare
	r.spare = nil
	if l != nil && !l.holds(locks) {
		l.finish(nil)
		l = nil
	}
	if l == nil {
		var err error
		if l, err = r.s.startLoadDB(r.ctx, locks); err != nil {
			return err
		}
	}
	return l.finish(regs)
}

// Close ends a prepared process that got no batch (it registers nothing).
func (r *Registrar) Close() {
	if r.spare != nil {
		r.spare.finish(nil)
		r.spare = nil
	}
}

// loadDB is a running `nix-store --load-db`, waiting for its input.
type loadDB struct {
	s      *Store
	prog   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr bytes.Buffer
	locks  map[*PathLock]bool // the locks it holds
}

func (s *Store) startLoadDB(ctx context.Context, locks []*PathLock) (*loadDB, error) {
	l := &loadDB{s: s, prog: s.NixStore, locks: map[*PathLock]bool{}}
	if l.prog == "" {
		l.prog = "nix-store"
	}
	storeArg := s.StoreArg
	if storeArg == "" {
		storeArg = "local"
	}
	l.cmd = exec.CommandContext(ctx, l.prog, "--store", storeArg, "--load-db")
	l.cmd.Env = append(withoutNixRemote(os.Environ()), s.Env...)
	l.cmd.Stderr = &l.stderr
	for _, lk := range locks {
		if lk != nil && lk.f != nil {
			l.cmd.ExtraFiles = append(l.cmd.ExtraFiles, lk.f)
			l.locks[lk] = true
		}
	}
	// Pdeathsig fires when the thread that forked the child ends, not the
	// process. LockOSThread keeps Start on one thread, which then goes
	// back to the runtime's pool, where threads end only when a goroutine
	// locked to one exits (nix-init has none): the signal comes when
	// nix-init dies. The inherited locks, not the signal, make a kill
	// safe: a child killed early is a failed registration, whose outcome
	// the caller asks the store about.
	l.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var err error
	if l.stdin, err = l.cmd.StdinPipe(); err == nil {
		runtime.LockOSThread()
		err = l.cmd.Start()
		runtime.UnlockOSThread()
	}
	if err != nil {
		return nil, fmt.Errorf("register paths in %s: start %s --load-db: %w", s.Dir, l.prog, err)
	}
	return l, nil
}

// holds reports whether the process holds every one of locks.
func (l *loadDB) holds(locks []*PathLock) bool {
	for _, lk := range locks {
		if !l.locks[lk] {
			return false
		}
	}
	return true
}

// finish writes regs, ends the input and waits for the transaction.
func (l *loadDB) finish(regs []Registration) error {
	var in bytes.Buffer
	for _, r := range regs {
		in.WriteString(r.Path + "\n" + r.NarHash + "\n" + strconv.FormatUint(r.NarSize, 10) + "\n" + r.Deriver + "\n")
		in.WriteString(strconv.Itoa(len(r.References)) + "\n")
		for _, ref := range r.References {
			in.WriteString(ref + "\n")
		}
	}
	_, werr := l.stdin.Write(in.Bytes())
	l.stdin.Close()
	err := l.cmd.Wait()
	if err == nil && werr != nil {
		err = werr
	}
	if err != nil {
		msg := strings.TrimSpace(store.CleanMessage(l.stderr.String()))
		if msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		return fmt.Errorf("register %d paths in %s (%s --load-db): %w", len(regs), l.s.Dir, l.prog, err)
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
