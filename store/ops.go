package store

import (
	"context"
	"fmt"
	"slices"
)

// Op codes (nix-reference 1.5).
type opCode uint64

const (
	opIsValidPath                 opCode = 1
	opBuildPaths                  opCode = 9
	opEnsurePath                  opCode = 10
	opAddTempRoot                 opCode = 11
	opAddIndirectRoot             opCode = 12
	opFindRoots                   opCode = 14
	opSetOptions                  opCode = 19
	opCollectGarbage              opCode = 20
	opQueryPathInfo               opCode = 26
	opQuerySubstitutablePathInfos opCode = 30
	opQueryValidPaths             opCode = 31
	opAddSignatures               opCode = 37
	opNarFromPath                 opCode = 38
	opAddToStoreNar               opCode = 39
	opQueryMissing                opCode = 40
)

// PathInfo is what the store records about a valid path.
type PathInfo struct {
	Path    string
	Deriver string // "" when unknown
	// NarHash as the daemon sends it: the sha256 of the NAR in base16,
	// without "sha256:" (NarHashNix32 gives Nix's usual form). On upload,
	// any form Nix parses is accepted.
	NarHash          string
	References       []string // full store paths
	RegistrationTime uint64   // Unix seconds; 0 on upload means now
	NarSize          uint64
	Ultimate         bool     // built locally rather than substituted
	Sigs             []string // "keyname:base64"
	CA               string   // content address, "" when input-addressed
}

// NarHashNix32 returns the NAR hash as "sha256:<nix32>", the form of
// narinfo files and signature fingerprints.
func (p PathInfo) NarHashNix32() (string, error) { return hexToNix32(p.NarHash) }

// Missing is what realising some paths would take (QueryMissing).
type Missing struct {
	WillBuild      []string
	WillSubstitute []string
	Unknown        []string // neither valid, buildable nor substitutable
	DownloadSize   uint64   // compressed bytes to download
	NarSize        uint64   // unpacked NAR bytes
}

// SubstitutablePathInfo is what a substituter knows of a path.
type SubstitutablePathInfo struct {
	Deriver      string
	References   []string
	DownloadSize uint64
	NarSize      uint64
}

// BuildMode is BuildPaths' mode.
type BuildMode uint64

const (
	BuildNormal BuildMode = 0
	BuildRepair BuildMode = 1 // trusted clients only; fatal to the connection otherwise
	BuildCheck  BuildMode = 2
)

// describe names a list of paths in error messages.
func describe(paths []string) string {
	switch len(paths) {
	case 0:
		return ""
	case 1:
		return paths[0]
	}
	return fmt.Sprintf("%s and %d more", paths[0], len(paths)-1)
}

// IsValidPath reports whether path is valid in the store.
func (c *Conn) IsValidPath(ctx context.Context, path string) (bool, error) {
	const op = "IsValidPath"
	if err := ValidatePath(path); err != nil {
		return false, c.opError(op, "", err)
	}
	var valid bool
	err := c.call(ctx, op, path, func() error {
		if err := c.request(opIsValidPath, func(e *encoder) { e.str(path) }); err != nil {
			return err
		}
		valid = c.dec.bool()
		return c.reply()
	})
	return valid, err
}

// QueryValidPaths returns the valid subset of paths. With substitute, the
// daemon first substitutes what it can (protocol ≥ 1.27; older daemons
// ignore the flag).
func (c *Conn) QueryValidPaths(ctx context.Context, paths []string, substitute bool) ([]string, error) {
	const op = "QueryValidPaths"
	if err := validatePaths(paths); err != nil {
		return nil, c.opError(op, "", err)
	}
	var valid []string
	err := c.call(ctx, op, describe(paths), func() error {
		err := c.request(opQueryValidPaths, func(e *encoder) {
			e.strs(paths)
			if c.protocol >= 0x11b { // 1.27
				e.bool(substitute)
			}
		})
		if err != nil {
			return err
		}
		valid = c.dec.strs()
		return c.reply()
	})
	return valid, err
}

// QueryPathInfo returns what the store records about path, or an error
// wrapping ErrNotValid when the path is not valid.
func (c *Conn) QueryPathInfo(ctx context.Context, path string) (*PathInfo, error) {
	const op = "QueryPathInfo"
	if err := ValidatePath(path); err != nil {
		return nil, c.opError(op, "", err)
	}
	var info *PathInfo
	err := c.call(ctx, op, path, func() error {
		var err error
		info, err = c.queryPathInfo(path)
		return err
	})
	return info, err
}

// QueryPathInfos is QueryPathInfo for many paths, pipelined like
// AddTempRoots: a closure's path infos cost one round trip per batch. A
// path that is not valid has no entry in the map.
func (c *Conn) QueryPathInfos(ctx context.Context, paths []string) (map[string]*PathInfo, error) {
	const op = "QueryPathInfo"
	if err := validatePaths(paths); err != nil {
		return nil, c.opError(op, "", err)
	}
	infos := make(map[string]*PathInfo, len(paths))
	err := c.call(ctx, op, describe(paths), func() error {
		for rest := paths; len(rest) > 0; {
			batch := rest[:min(len(rest), pipelineDepth)]
			rest = rest[len(batch):]
			for _, p := range batch {
				c.enc.u64(uint64(opQueryPathInfo))
				c.enc.str(p)
			}
			if err := c.flush(); err != nil {
				return err
			}
			for i, p := range batch {
				err := c.stderrLoop(nil, nil)
				var info *PathInfo
				if err == nil {
					if c.dec.bool() && c.dec.err == nil {
						info, err = c.readPathInfo(p)
					} else {
						err = c.reply()
					}
				}
				if err != nil {
					if i < len(batch)-1 {
						c.setBroken(fmt.Errorf("%s of %s failed with %d replies pending: %w", op, p, len(batch)-1-i, err))
					}
					return err
				}
				if info != nil {
					infos[p] = info
				}
			}
		}
		return nil
	})
	return infos, err
}

// queryPathInfo is QueryPathInfo inside a call. Daemons at ≥ 1.17 (all we
// accept) answer an invalid path with "false" rather than an error.
func (c *Conn) queryPathInfo(path string) (*PathInfo, error) {
	if err := c.request(opQueryPathInfo, func(e *encoder) { e.str(path) }); err != nil {
		return nil, err
	}
	d := &c.dec
	valid := d.bool()
	if d.err != nil {
		return nil, d.err
	}
	if !valid {
		return nil, &syncedError{ErrNotValid}
	}
	return c.readPathInfo(path)
}

// readPathInfo reads the PathInfo layout of QueryPathInfo's reply.
func (c *Conn) readPathInfo(path string) (*PathInfo, error) {
	d := &c.dec
	info := &PathInfo{Path: path}
	info.Deriver = d.str()
	info.NarHash = d.str()
	info.References = d.strs()
	info.RegistrationTime = d.u64()
	info.NarSize = d.u64()
	// ≥ 1.16, so always here:
	info.Ultimate = d.bool()
	info.Sigs = d.strs()
	info.CA = d.str()
	if d.err != nil {
		return nil, d.err
	}
	return info, nil
}

// QueryMissing says what realising targets (store paths, or derivations
// with outputs "drv!out") would build, substitute, or cannot find.
func (c *Conn) QueryMissing(ctx context.Context, targets []string) (Missing, error) {
	const op = "QueryMissing"
	var m Missing
	for _, t := range targets {
		if err := validateDerivedPath(t); err != nil {
			return m, c.opError(op, "", err)
		}
	}
	err := c.call(ctx, op, describe(targets), func() error {
		if err := c.request(opQueryMissing, func(e *encoder) { e.strs(targets) }); err != nil {
			return err
		}
		d := &c.dec
		m.WillBuild = d.strs()
		m.WillSubstitute = d.strs()
		m.Unknown = d.strs()
		m.DownloadSize = d.u64()
		m.NarSize = d.u64()
		return c.reply()
	})
	return m, err
}

// QuerySubstitutablePathInfos asks the daemon's substituters about paths
// (input-addressed: no content address is sent). Paths no substituter has
// are absent from the result.
func (c *Conn) QuerySubstitutablePathInfos(ctx context.Context, paths []string) (map[string]SubstitutablePathInfo, error) {
	const op = "QuerySubstitutablePathInfos"
	if err := validatePaths(paths); err != nil {
		return nil, c.opError(op, "", err)
	}
	infos := map[string]SubstitutablePathInfo{}
	err := c.call(ctx, op, describe(paths), func() error {
		err := c.request(opQuerySubstitutablePathInfos, func(e *encoder) {
			if c.protocol >= 0x116 { // 1.22: a map from path to content address
				e.u64(uint64(len(paths)))
				for _, p := range paths {
					e.str(p)
					e.str("")
				}
			} else {
				e.strs(paths)
			}
		})
		if err != nil {
			return err
		}
		d := &c.dec
		n := d.count("substitutable path")
		for i := 0; i < n && d.err == nil; i++ {
			p := d.str()
			var s SubstitutablePathInfo
			s.Deriver = d.str()
			s.References = d.strs()
			s.DownloadSize = d.u64()
			s.NarSize = d.u64()
			if d.err == nil {
				infos[p] = s
			}
		}
		return c.reply()
	})
	if err != nil {
		return nil, err
	}
	return infos, nil
}

// EnsurePath makes path valid, substituting it if needed. It fails when no
// substituter has it ("does not exist and cannot be created").
func (c *Conn) EnsurePath(ctx context.Context, path string) error {
	return c.pathOp(ctx, "EnsurePath", opEnsurePath, path)
}

// AddTempRoot protects path from garbage collection for as long as this
// connection lasts.
func (c *Conn) AddTempRoot(ctx context.Context, path string) error {
	return c.pathOp(ctx, "AddTempRoot", opAddTempRoot, path)
}

// AddTempRoots is AddTempRoot for many paths, pipelined: requests go out
// in batches without waiting for each reply. A cold closure's hundreds of
// temp roots cost one round trip per batch instead of one per path, which
// matters most when many runs share a busy daemon. An error leaves the
// connection unusable (later replies would be misread).
func (c *Conn) AddTempRoots(ctx context.Context, paths []string) error {
	if err := validatePaths(paths); err != nil {
		return c.opError("AddTempRoot", "", err)
	}
	return c.pipeline(ctx, "AddTempRoot", paths, func(e *encoder, path string) {
		e.u64(uint64(opAddTempRoot))
		e.str(path)
	})
}

// AddSignatures records signatures of valid paths (trusted clients only),
// pipelined like AddTempRoots: sigs[path] are "keyname:base64" strings.
// Nix keeps the signatures of the paths it substitutes; a path that
// reached the store another way can be given them afterwards.
func (c *Conn) AddSignatures(ctx context.Context, sigs map[string][]string) error {
	paths := make([]string, 0, len(sigs))
	for p := range sigs {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	if err := validatePaths(paths); err != nil {
		return c.opError("AddSignatures", "", err)
	}
	return c.pipeline(ctx, "AddSignatures", paths, func(e *encoder, path string) {
		e.u64(uint64(opAddSignatures))
		e.str(path)
		e.strs(sigs[path])
	})
}

// pipelineDepth bounds the requests a pipeline sends before reading their
// replies, so that neither side can block writing into a full socket
// buffer while the other is writing too.
const pipelineDepth = 256

// pipeline sends one request per path, written by write, in batches of
// pipelineDepth, and reads their replies (each a u64 1) in order.
func (c *Conn) pipeline(ctx context.Context, op string, paths []string, write func(e *encoder, path string)) error {
	return c.call(ctx, op, describe(paths), func() error {
		for len(paths) > 0 {
			batch := paths[:min(len(paths), pipelineDepth)]
			paths = paths[len(batch):]
			for _, p := range batch {
				write(&c.enc, p)
			}
			if err := c.flush(); err != nil {
				return err
			}
			for i := range batch {
				if err := c.stderrLoop(nil, nil); err != nil {
					if i < len(batch)-1 {
						c.setBroken(fmt.Errorf("%s of %s failed with %d replies pending: %w", op, batch[i], len(batch)-1-i, err))
					}
					return err
				}
				c.dec.u64() // always 1
				if err := c.reply(); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func (c *Conn) pathOp(ctx context.Context, op string, code opCode, path string) error {
	if err := ValidatePath(path); err != nil {
		return c.opError(op, "", err)
	}
	return c.call(ctx, op, path, func() error {
		if err := c.request(code, func(e *encoder) { e.str(path) }); err != nil {
			return err
		}
		c.dec.u64() // always 1
		return c.reply()
	})
}

// AddIndirectRoot registers link, the absolute path of a symlink into the
// store, as an indirect GC root: the daemon links
// <state>/gcroots/auto/<nix32(sha1(link))> to it. Relative paths are
// refused (the daemon would resolve them against its own working directory).
func (c *Conn) AddIndirectRoot(ctx context.Context, link string) error {
	const op = "AddIndirectRoot"
	clean, err := validateLink(link)
	if err != nil {
		return c.opError(op, "", err)
	}
	return c.call(ctx, op, clean, func() error {
		if err := c.request(opAddIndirectRoot, func(e *encoder) { e.str(clean) }); err != nil {
			return err
		}
		c.dec.u64() // always 1
		return c.reply()
	})
}

// FindRoots lists the store's GC roots: each root's link (for an indirect
// root, the link it points at) and the store path it keeps alive. Untrusted
// clients may ask; the daemon censors temp and runtime roots for them.
func (c *Conn) FindRoots(ctx context.Context) (map[string]string, error) {
	const op = "FindRoots"
	roots := map[string]string{}
	err := c.call(ctx, op, "", func() error {
		if err := c.request(opFindRoots, nil); err != nil {
			return err
		}
		n := c.dec.count("roots")
		for i := 0; i < n && c.dec.err == nil; i++ {
			link := c.dec.str()
			roots[link] = c.dec.str()
		}
		return c.reply()
	})
	if err != nil {
		return nil, err
	}
	return roots, nil
}

// BuildPaths realises targets (store paths, or derivations with outputs
// "drv!out1,out2"), substituting or building as needed.
func (c *Conn) BuildPaths(ctx context.Context, targets []string, mode BuildMode) error {
	const op = "BuildPaths"
	for _, t := range targets {
		if err := validateDerivedPath(t); err != nil {
			return c.opError(op, "", err)
		}
	}
	if mode > BuildCheck {
		return c.opError(op, "", fmt.Errorf("unknown build mode %d", mode))
	}
	return c.call(ctx, op, describe(targets), func() error {
		err := c.request(opBuildPaths, func(e *encoder) {
			e.strs(targets)
			e.u64(uint64(mode)) // ≥ 1.15
		})
		if err != nil {
			return err
		}
		c.dec.u64() // always 1
		return c.reply()
	})
}

// GCAction is what CollectGarbage does.
type GCAction uint64

const (
	GCReturnLive     GCAction = 0 // list the live paths (nothing is deleted)
	GCReturnDead     GCAction = 1 // list the dead paths (nothing is deleted)
	GCDeleteDead     GCAction = 2 // delete the dead paths
	GCDeleteSpecific GCAction = 3 // delete PathsToDelete if they are dead
)

// GCOptions are CollectGarbage's arguments. The daemon refuses
// IgnoreLiveness from anyone, so it is not offered.
type GCOptions struct {
	Action        GCAction
	PathsToDelete []string
	// MaxFreed stops deleting (or listing) once that many bytes are
	// freed. 0 skips the walk over the store: only the roots are
	// collected, under the GC lock.
	MaxFreed uint64
}

// GCResult is what CollectGarbage did.
type GCResult struct {
	Paths      []string // deleted, or listed for the Return actions
	BytesFreed uint64
}

// CollectGarbage runs the store's garbage collector (untrusted clients may).
// It waits for the global GC lock first, that is, for a collection in
// progress to finish: with GCReturnLive and MaxFreed 0 it does nothing but
// that and a scan of the roots, which is how a client waits until no
// collection that started before some point in time is still running.
func (c *Conn) CollectGarbage(ctx context.Context, o GCOptions) (GCResult, error) {
	const op = "CollectGarbage"
	var res GCResult
	if o.Action > GCDeleteSpecific {
		return res, c.opError(op, "", fmt.Errorf("unknown GC action %d", o.Action))
	}
	if err := validatePaths(o.PathsToDelete); err != nil {
		return res, c.opError(op, "", err)
	}
	err := c.call(ctx, op, "", func() error {
		err := c.request(opCollectGarbage, func(e *encoder) {
			e.u64(uint64(o.Action))
			e.strs(o.PathsToDelete)
			e.bool(false) // ignoreLiveness
			e.u64(o.MaxFreed)
			e.u64(0) // obsolete
			e.u64(0) // obsolete
			e.u64(0) // obsolete
		})
		if err != nil {
			return err
		}
		res.Paths = c.dec.strs()
		res.BytesFreed = c.dec.u64()
		c.dec.u64() // obsolete
		return c.reply()
	})
	return res, err
}
