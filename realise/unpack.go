package realise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nix-aurora/nix-aurora/binarycache"
	"github.com/nix-aurora/nix-aurora/internal/human"
	"github.com/nix-aurora/nix-aurora/localstore"
	"github.com/nix-aurora/nix-aurora/store"
)

// lockPoll is how often fetchLocal looks again at paths whose locks
// another process holds (Nix, or another nix-init importing them).
const lockPoll = 20 * time.Millisecond

// localJob is a planned path on its way into a store this process owns.
type localJob struct {
	pp       binarycache.PlannedPath
	refs     []string // its references, from the narinfo
	lock     *localstore.PathLock
	unpacked atomic.Bool
}

// fetchLocal is fetch for a single-user store (Direct.Local): each NAR is
// streamed from the cache straight into the store's directory, verified
// on the way, and the paths are made valid a few transactions at a time
// (see unpackRegistering). The daemon
// import it replaces hashes and unpacks every NAR a second time, commits
// one transaction per path, and cannot use a second core (imports over
// several connections contend for the database).
//
// Paths are locked as Nix locks them, so that Nix or another run never
// unpacks the same path at once; a path whose lock another process holds
// is waited for (polled) and taken over if it does not become valid. While
// it waits, this run holds only the locks of paths that it unpacked but
// cannot register yet (a reference is the other process's), so two runs
// cannot wait for each other: the lowest unregistered path of a closure is
// always registrable by whoever holds it.
func (d *Direct) fetchLocal(ctx context.Context, s *Session, plan *binarycache.Plan, logf func(string, ...any)) (err error) {
	ls := d.Local
	valid := map[string]bool{} // paths known valid now
	var todo, parked []*localJob
	for _, pp := range plan.Paths {
		todo = append(todo, &localJob{pp: pp, refs: pp.Info.ReferencePaths()})
		valid[pp.Path] = false
	}
	for _, j := range todo {
		for _, ref := range j.refs {
			if _, planned := valid[ref]; !planned {
				valid[ref] = true // valid when the plan was made
			}
		}
	}
	reg := ls.NewRegistrar(ctx)
	defer func() {
		reg.Close()
		if len(parked) == 0 {
			return
		}
		// Even when interrupted, but not for long: nix-store waits for a
		// busy database.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), keepTimeout)
		defer cancel()
		// Whatever failed, what was verified and unpacked is kept when it
		// can be registered, so that a retry fetches only the rest.
		d.register(rctx, s, ls.NewRegistrar(rctx), parked, valid)
		d.removeUnregistered(rctx, s, d.unregistered(parked, valid), logf)
	}()
	for first := true; len(todo) > 0 || len(parked) > 0; first = false {
		if !first {
			select {
			case <-time.After(lockPoll):
			case <-ctx.Done():
				return fmt.Errorf("wait for paths other processes are importing: %w", context.Cause(ctx))
			}
		}
		var mine, others []*localJob
		for _, j := range todo {
			lock, err := localstore.TryLock(ls.RealPath(j.pp.Path))
			if err != nil {
				for _, m := range mine {
					m.lock.Unlock(true)
				}
				return fmt.Errorf("lock %s in %s: %w", j.pp.Path, ls.Dir, err)
			}
			if lock == nil {
				others = append(others, j)
				continue
			}
			j.lock = lock
			mine = append(mine, j)
		}
		todo = others
		// Another process may have imported some since the plan was made.
		if len(mine) > 0 {
			nowValid, err := s.Conn.QueryValidPaths(ctx, jobPaths(mine), false)
			if err != nil {
				for _, m := range mine {
					m.lock.Unlock(true)
				}
				return fmt.Errorf("query valid paths: %w", err)
			}
			for _, p := range nowValid {
				valid[p] = true
			}
			fresh := mine[:0]
			for _, j := range mine {
				if valid[j.pp.Path] {
					j.lock.Unlock(true)
				} else {
					fresh = append(fresh, j)
				}
			}
			mine = fresh
		}
		parked = append(parked, mine...)
		if err := d.unpackRegistering(ctx, s, reg, mine, &parked, valid, logf); err != nil {
			return err
		}
	}
	return nil
}

// keepTimeout bounds the registration of what a failed run verified and
// unpacked.
const keepTimeout = 10 * time.Second

// removeUnregistered removes the files and lock files of jobs, which a
// failed run holds locked and did not register, but only those the store
// says are invalid: a registration that failed may have committed all the
// same (its nix-store was killed, or its answer was lost), and removing a
// valid path's files would leave it valid with nothing on disk. When the
// store cannot tell, the files stay: the next run that takes a path's
// lock removes them if the path is invalid.
func (d *Direct) removeUnregistered(ctx context.Context, s *Session, jobs []*localJob, logf func(string, ...any)) {
	if len(jobs) == 0 {
		return
	}
	ls := d.Local
	nowValid, err := s.Conn.QueryValidPaths(ctx, jobPaths(jobs), false)
	if err != nil {
		logf("keeping the files of %s whose registration failed in %s: cannot tell whether they are valid (%v); the next run removes those that are not", human.Count(int64(len(jobs)), "path", ""), ls.Dir, err)
	}
	isValid := pathSet(nowValid)
	for _, j := range jobs {
		if err == nil && !isValid[j.pp.Path] {
			if rerr := localstore.RemoveAll(ls.RealPath(j.pp.Path)); rerr != nil {
				logf("cannot remove the unregistered %s: %v", ls.RealPath(j.pp.Path), rerr)
			}
		}
		j.lock.Unlock(true)
	}
}

// minWave is the fewest registrable paths worth a registration while
// downloads go on (each costs a nix-store process).
const minWave = 64

// unpackRegistering unpacks jobs and, while it does, registers in waves
// what became registrable, so that the last transaction after the last
// download is small: registering a 400-path closure takes nix-store about
// 0.1 s of CPU, which the second core can do during the downloads.
func (d *Direct) unpackRegistering(ctx context.Context, s *Session, reg *localstore.Registrar, jobs []*localJob, parked *[]*localJob, valid map[string]bool, logf func(string, ...any)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nudge := make(chan struct{}, 1)
	unpacked := make(chan error, 1)
	go func() {
		unpacked <- d.unpackAll(ctx, s, jobs, logf, func() {
			select {
			case nudge <- struct{}{}:
			default:
			}
		})
	}()
	wave := max(minWave, len(jobs)/4)
	for {
		select {
		case err := <-unpacked:
			if err != nil {
				return err
			}
			if err := d.register(ctx, s, reg, *parked, valid); err != nil {
				return err
			}
			*parked = d.unregistered(*parked, valid)
			return nil
		case <-nudge:
			waiting, left := 0, 0
			for _, j := range *parked {
				if j.unpacked.Load() {
					waiting++
				} else {
					left++
				}
			}
			// The next nix-store starts ahead when a batch draws near:
			// half a wave waiting, or the last wave's worth left.
			if waiting >= wave/2 || left <= wave {
				reg.Prepare(jobLocks(*parked))
			}
			if waiting < wave {
				continue
			}
			if err := d.register(ctx, s, reg, *parked, valid); err != nil {
				cancel()
				<-unpacked
				return err
			}
			*parked = d.unregistered(*parked, valid)
		}
	}
}

// unpackAll downloads and unpacks jobs, Jobs at a time, in plan order,
// calling done after each. A transient failure stops no other download
// (see transientFailures): what unpacks is registered, and the retry
// fetches the rest.
func (d *Direct) unpackAll(ctx context.Context, s *Session, jobs []*localJob, logf func(string, ...any), done func()) error {
	n := d.Jobs
	if n <= 0 {
		n = DefaultDirectJobs
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(n)
	var deferred transientFailures
	for _, j := range jobs {
		g.Go(func() error {
			start := time.Now()
			real := d.Local.RealPath(j.pp.Path)
			// What a killed import left behind (Nix does the same).
			if err := localstore.RemoveAll(real); err != nil {
				return fmt.Errorf("remove the invalid %s before unpacking it: %w", real, err)
			}
			err := j.pp.Cache.ReadNar(gctx, j.pp.Info, func(r io.Reader) error {
				_, err := localstore.Unpack(real, r)
				return err
			})
			if err != nil {
				var be *binarycache.Error
				if !errors.As(err, &be) { // else it names the path and the cache
					err = &binarycache.Error{Op: "unpack NAR", Path: j.pp.Path, Cache: j.pp.Cache.URL(), Err: err}
				}
				if deferred.add(gctx, err) {
					// What it left is removed when the run lets go of it
					// (removeUnregistered) or by the next that takes its lock.
					return nil
				}
				return err
			}
			j.unpacked.Store(true)
			done()
			secs := time.Since(start).Seconds()
			size := downloadSize(j.pp.Info)
			s.Fetched(PathReport{Path: j.pp.Path, From: j.pp.Cache.URL(), Bytes: size, Seconds: secs})
			logf("fetched %s from %s (%s, %.2fs)", j.pp.Path, j.pp.Cache.URL(), human.Bytes(size), secs)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return deferred.err()
}

// register makes valid, in one transaction, every unpacked job whose
// references are valid or registered with it, and releases their locks
// (deleting the lock files, as Nix does once a path is valid).
func (d *Direct) register(ctx context.Context, s *Session, reg *localstore.Registrar, jobs []*localJob, valid map[string]bool) error {
	batch := map[string]*localJob{}
	for _, j := range jobs {
		if j.unpacked.Load() && !valid[j.pp.Path] {
			batch[j.pp.Path] = j
		}
	}
	// Drop what refers to a path neither valid nor in the batch, until
	// nothing more drops.
	for changed := true; changed; {
		changed = false
		for p, j := range batch {
			for _, ref := range j.refs {
				if !valid[ref] && batch[ref] == nil {
					delete(batch, p)
					changed = true
					break
				}
			}
		}
	}
	if len(batch) == 0 {
		return nil
	}
	regs := make([]localstore.Registration, 0, len(batch))
	for _, j := range jobs { // plan order: references first
		if batch[j.pp.Path] == nil {
			continue
		}
		ni := j.pp.Info
		r := localstore.Registration{Path: j.pp.Path, NarHash: ni.NarHash, NarSize: ni.NarSize, References: j.refs, Lock: j.lock}
		if drv := binarycache.StoreDir + "/" + ni.Deriver; ni.Deriver != "" && store.ValidatePath(drv) == nil {
			r.Deriver = drv
		}
		regs = append(regs, r)
	}
	start := time.Now()
	if err := reg.Register(regs); err != nil {
		if strings.Contains(err.Error(), "is not valid") {
			// A reference that was valid when the plan was made has been
			// collected since: planning again fetches it.
			return &DiagnosedError{Err: err, Cause: "a reference was garbage-collected during the run", Heal: true}
		}
		return err
	}
	for _, r := range regs {
		valid[r.Path] = true
		batch[r.Path].lock.Unlock(true)
	}
	// The store keeps the caches' signatures of what it substitutes:
	// these paths keep theirs too (the child daemon trusts us). They are
	// valid either way: a failure here is only worth a warning.
	sigs := make(map[string][]string, len(regs))
	for _, r := range regs {
		if ss := batch[r.Path].pp.Info.Sigs; len(ss) > 0 {
			sigs[r.Path] = ss
		}
	}
	if err := s.Conn.AddSignatures(ctx, sigs); err != nil {
		s.Logf("warning: cannot record the caches' signatures of %s: %v", human.Count(int64(len(sigs)), "path", ""), err)
	}
	if s.Config.Verbose {
		s.Logf("registered %s in %s in %.3fs", human.Count(int64(len(regs)), "path", ""), d.Local.Dir, time.Since(start).Seconds())
	}
	return nil
}

// unregistered returns the jobs not valid yet.
func (d *Direct) unregistered(jobs []*localJob, valid map[string]bool) []*localJob {
	var out []*localJob
	for _, j := range jobs {
		if !valid[j.pp.Path] {
			out = append(out, j)
		}
	}
	return out
}

// jobLocks are the locks of jobs: every lock a batch of theirs may need.
func jobLocks(jobs []*localJob) []*localstore.PathLock {
	out := make([]*localstore.PathLock, len(jobs))
	for i, j := range jobs {
		out[i] = j.lock
	}
	return out
}

func jobPaths(jobs []*localJob) []string {
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = j.pp.Path
	}
	return out
}
