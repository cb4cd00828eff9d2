package binarycache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"golang.org/x/sync/errgroup"

	"github.com/nix-aurora/nix-aurora/store"
)

// Source is where an Uploader reads store paths: *store.Conn is one, so
// NARs come from the store through the daemon protocol.
type Source interface {
	QueryPathInfo(ctx context.Context, path string) (*store.PathInfo, error)
	NarFromPath(ctx context.Context, path string, w io.Writer) (*store.PathInfo, error)
}

// UploadOptions configure an Uploader.
type UploadOptions struct {
	// Options say how to reach the cache (netrc, timeouts, retries, Logf).
	// TrustedKeys are not used.
	Options
	// Compression of uploaded NARs: "zstd" (default), "xz" or "none".
	Compression string
	// Parallel is how many paths are prepared and uploaded at once
	// (default 4).
	Parallel int
	// TempDir holds NARs on their way to an HTTP cache (default
	// os.TempDir()). file:// caches use their own nar/ directory.
	TempDir string
	// Unsigned uploads without signing: NewUploader then takes the zero
	// SecretKey. Narinfos carry only the signatures the store already
	// has, so nodes accept them only with require-sigs = false (or if
	// they trust those keys). A path the cache already has (as keepable
	// says) is skipped.
	Unsigned bool
	// Progress, when set, is told about each path of the closures once it
	// is settled: what was done ("uploaded"; "re-uploaded" when the cache
	// had a narinfo that it replaced; "signed" or "skipped") and the
	// narinfo the cache now has. It may be called concurrently.
	Progress func(path, action string, ni *NarInfo)
}

// The file the Uploader writes when a cache has no nix-cache-info.
const defaultCacheInfo = "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n"

// Content types, as Nix's HttpBinaryCacheStore sends them.
const (
	contentTypeNarInfo      = "text/x-nix-narinfo"
	contentTypeNar          = "application/x-nix-nar"
	contentTypeCacheInfo    = "text/x-nix-cache-info"
	contentTypeClosureIndex = "text/x-nix-aurora-closure-index"
)

// Uploader writes store paths to a binary cache, as `nix copy --to` does:
// a file:// directory (every file written to a temporary file and renamed
// into place) or an http(s):// cache (HTTP PUT of each file, as Nix's
// HttpBinaryCacheStore does). It writes nix-cache-info when absent, NARs
// (compressed, at nar/<nix32 FileHash>.nar<ext>), signed narinfos, and a
// closure index for each root. It never holds a NAR in memory.
type Uploader struct {
	c    *Cache
	key  SecretKey
	opts UploadOptions
}

// UploadResult says what an Upload did.
type UploadResult struct {
	Uploaded []string // NAR and narinfo written
	// Replaced are the paths of Uploaded whose narinfo the cache had
	// already, but that did not match the store, was invalid, or named a
	// NAR the cache does not have (see keepable).
	Replaced []string
	Signed   []string // already in the cache with the same NAR: our signature added
	Skipped  []string // already in the cache, signed by our key
	Indexes  []string // closure index files written
	// UnchangedIndexes are closure index files the cache already had,
	// byte for byte, and that were not written again.
	UnchangedIndexes []string
	FileBytes        uint64 // compressed NAR bytes written
}

// NewUploader prepares uploads to the cache at rawURL, signing with key
// (unless opts.Unsigned).
// It reads the cache's nix-cache-info, and writes one
// ("StoreDir: /nix/store", "WantMassQuery: 1", "Priority: 40") if there is
// none.
func NewUploader(ctx context.Context, rawURL string, key SecretKey, opts UploadOptions) (*Uploader, error) {
	switch {
	case opts.Unsigned && (key.Name != "" || len(key.Key) != 0):
		return nil, &Error{Op: "upload", Cache: rawURL, Err: errors.New("an unsigned upload takes no secret key")}
	case !opts.Unsigned && (key.Name == "" || len(key.Key) != 64):
		return nil, &Error{Op: "upload", Cache: rawURL, Err: errors.New("a secret key is required to sign what is uploaded")}
	}
	switch opts.Compression {
	case "":
		opts.Compression = "zstd"
	case "zstd", "xz", "none":
	default:
		return nil, &Error{Op: "upload", Cache: rawURL, Err: fmt.Errorf("unsupported compression %q (want zstd, xz or none)", opts.Compression)}
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 4
	}
	c, cu, err := newCache(rawURL, opts.Options)
	if err != nil {
		return nil, err
	}
	u := &Uploader{c: c, key: key, opts: opts}
	info, err := c.getSmall(ctx, "nix-cache-info", 64<<10, false)
	switch {
	case errors.Is(err, ErrNotFound):
		if err := u.put(ctx, "nix-cache-info", contentTypeCacheInfo, []byte(defaultCacheInfo)); err != nil {
			return nil, &Error{Op: "upload", Path: "nix-cache-info", Cache: c.url, Err: err}
		}
		info = []byte(defaultCacheInfo)
	case err != nil:
		return nil, &Error{Op: "open", Cache: c.url, Err: err}
	}
	if err := c.applyCacheInfo(info, cu); err != nil {
		return nil, err
	}
	return u, nil
}

// URL returns the cache's URL.
func (u *Uploader) URL() string { return u.c.url }

// put uploads a small file with retries.
func (u *Uploader) put(ctx context.Context, name, contentType string, data []byte) error {
	return u.putWith(ctx, name, contentType, int64(len(data)), func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}

func (u *Uploader) putWith(ctx context.Context, name, contentType string, size int64, body func() (io.ReadCloser, error)) error {
	return u.c.retry.do(ctx, fmt.Sprintf("upload %s to %s", name, u.c.url), func() error {
		if err := u.c.sem.Acquire(ctx, 1); err != nil {
			return err
		}
		defer u.c.sem.Release(1)
		return u.c.be.put(ctx, name, contentType, size, body)
	})
}

// Upload uploads the closures of roots from src, references before the
// paths that refer to them (a narinfo is written only after the narinfos
// of its references), skipping what the cache already has (if keepable
// says it may stay), and then writes a closure index for each root (unless
// the cache has that very index).
func (u *Uploader) Upload(ctx context.Context, src Source, roots []string) (*UploadResult, error) {
	for _, r := range roots {
		if err := store.ValidatePath(r); err != nil {
			return nil, &Error{Op: "upload", Path: r, Cache: u.c.url, Err: err}
		}
	}
	roots = sortedUnique(slices.Clone(roots))
	infos, order, err := closureOf(ctx, src, roots)
	if err != nil {
		return nil, &Error{Op: "upload", Cache: u.c.url, Err: err}
	}
	res := &UploadResult{}
	var mu sync.Mutex
	final := map[string]*NarInfo{}
	done := map[string]chan struct{}{}
	for _, p := range order {
		done[p] = make(chan struct{})
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(u.opts.Parallel)
	// Launched references first: a goroutine only waits for earlier ones,
	// so the limit cannot deadlock.
	for _, p := range order {
		g.Go(func() error {
			ni, action, err := u.uploadPath(gctx, src, infos[p], func() error {
				for _, ref := range infos[p].References {
					if ref == p {
						continue
					}
					select {
					case <-done[ref]:
					case <-gctx.Done():
						return gctx.Err()
					}
				}
				return nil
			})
			if err != nil {
				return &Error{Op: "upload", Path: p, Cache: u.c.url, Err: err}
			}
			mu.Lock()
			final[p] = ni
			switch action {
			case "re-uploaded":
				res.Replaced = append(res.Replaced, p)
				fallthrough
			case "uploaded":
				res.Uploaded = append(res.Uploaded, p)
				res.FileBytes += ni.FileSize
			case "signed":
				res.Signed = append(res.Signed, p)
			default:
				res.Skipped = append(res.Skipped, p)
			}
			mu.Unlock()
			close(done[p])
			if u.opts.Progress != nil {
				u.opts.Progress(p, action, ni)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return res, err
	}
	for _, s := range [][]string{res.Uploaded, res.Replaced, res.Signed, res.Skipped} {
		slices.Sort(s)
	}
	for _, root := range roots {
		var closure []*NarInfo
		seen := map[string]bool{root: true}
		queue := []string{root}
		var err error
		for len(queue) > 0 && err == nil {
			p := queue[0]
			queue = queue[1:]
			closure = append(closure, final[p])
			for _, ref := range final[p].ReferencePaths() {
				if final[ref] == nil {
					err = fmt.Errorf("the cache's narinfo of %s references %s, which is not in the store's closure", p, ref)
					break
				}
				if !seen[ref] {
					seen[ref] = true
					queue = append(queue, ref)
				}
			}
		}
		if err != nil {
			return res, &Error{Op: "upload", Path: root, Cache: u.c.url, Err: err}
		}
		var buf bytes.Buffer
		if err := WriteClosureIndex(&buf, root, closure); err != nil {
			return res, &Error{Op: "upload", Path: root, Cache: u.c.url, Err: err}
		}
		name := ClosureIndexName(root)
		// An index the cache has already is not written again. Failing to
		// read it is no reason not to write it.
		old, err := u.c.getSmall(ctx, name, MaxClosureIndexSize, false)
		switch {
		case err == nil && bytes.Equal(old, buf.Bytes()):
			res.UnchangedIndexes = append(res.UnchangedIndexes, name)
			continue
		case err != nil && !errors.Is(err, ErrNotFound):
			u.c.logf("%s: replacing the cache's closure index, which cannot be read: %v", root, err)
		}
		if err := u.put(ctx, name, contentTypeClosureIndex, buf.Bytes()); err != nil {
			return res, &Error{Op: "upload", Path: name, Cache: u.c.url, Err: err}
		}
		res.Indexes = append(res.Indexes, name)
	}
	return res, nil
}

// closureOf returns the path infos of the roots' closure and its paths,
// references first.
func closureOf(ctx context.Context, src Source, roots []string) (map[string]*store.PathInfo, []string, error) {
	infos := map[string]*store.PathInfo{}
	queue := slices.Clone(roots)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if infos[p] != nil {
			continue
		}
		info, err := src.QueryPathInfo(ctx, p)
		if err != nil {
			return nil, nil, fmt.Errorf("querying %s: %w", p, err)
		}
		if info == nil {
			return nil, nil, fmt.Errorf("%s is not valid in the store", p)
		}
		infos[p] = info
		for _, ref := range info.References {
			if infos[ref] == nil {
				queue = append(queue, ref)
			}
		}
	}
	paths := make([]string, 0, len(infos))
	for p := range infos {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	state := map[string]int{}
	var order []string
	var visit func(string) error
	visit = func(p string) error {
		switch state[p] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("reference cycle through %s", p)
		}
		state[p] = 1
		refs := slices.Clone(infos[p].References)
		slices.Sort(refs)
		for _, r := range refs {
			if r != p {
				if err := visit(r); err != nil {
					return err
				}
			}
		}
		state[p] = 2
		order = append(order, p)
		return nil
	}
	for _, p := range paths {
		if err := visit(p); err != nil {
			return nil, nil, err
		}
	}
	return infos, order, nil
}

// uploadPath uploads one path (or decides it is there already). It calls
// wait before writing the narinfo.
func (u *Uploader) uploadPath(ctx context.Context, src Source, info *store.PathInfo, wait func() error) (*NarInfo, string, error) {
	p := info.Path
	narHash, err := info.NarHashNix32()
	if err != nil {
		return nil, "", fmt.Errorf("the store's NAR hash of %s: %w", p, err)
	}
	refs := make([]string, 0, len(info.References))
	for _, r := range info.References {
		refs = append(refs, strings.TrimPrefix(r, StoreDir+"/"))
	}
	refs = sortedUnique(refs)
	existing, err := u.c.fetchNarInfo(ctx, p)
	uploaded := "uploaded"
	switch {
	case err == nil:
		why, err := u.keepable(ctx, existing, narHash, info.NarSize, refs)
		if err != nil {
			return nil, "", err
		}
		if why == "" {
			if u.opts.Unsigned || Verify(existing, []PublicKey{u.key.PublicKey()}) == nil {
				return existing, "skipped", nil
			}
			if err := Sign(existing, u.key); err != nil {
				return nil, "", err
			}
			if err := wait(); err != nil {
				return nil, "", err
			}
			if err := u.put(ctx, HashPart(p)+".narinfo", contentTypeNarInfo, []byte(existing.String())); err != nil {
				return nil, "", err
			}
			return existing, "signed", nil
		}
		u.c.logf("%s: the cache's narinfo %s; uploading the NAR and narinfo afresh", p, why)
		uploaded = "re-uploaded"
	case errors.Is(err, ErrBadNarInfo) || errors.Is(err, ErrBadContent):
		u.c.logf("%s: replacing an invalid narinfo in the cache: %v", p, err)
		uploaded = "re-uploaded"
	case !errors.Is(err, ErrNotFound):
		return nil, "", err
	}

	nf, err := u.dumpNar(ctx, src, p, narHash, info.NarSize)
	if err != nil {
		return nil, "", err
	}
	defer os.Remove(nf.tmp)
	ni := &NarInfo{
		StorePath:   p,
		URL:         "nar/" + nf.fileHash + ".nar" + compressionExt(u.opts.Compression),
		Compression: u.opts.Compression,
		FileHash:    "sha256:" + nf.fileHash,
		FileSize:    nf.fileSize,
		NarHash:     narHash,
		NarSize:     info.NarSize,
		References:  refs,
		Sigs:        slices.Clone(info.Sigs),
		CA:          info.CA,
	}
	if info.Deriver != "" {
		ni.Deriver = strings.TrimPrefix(info.Deriver, StoreDir+"/")
	}
	if !u.opts.Unsigned {
		if err := Sign(ni, u.key); err != nil {
			return nil, "", err
		}
	}
	if fb, ok := u.c.be.(*fileBackend); ok {
		if err := fb.renameInto(nf.tmp, ni.URL); err != nil {
			return nil, "", err
		}
	} else {
		err := u.putWith(ctx, ni.URL, contentTypeNar, int64(nf.fileSize), func() (io.ReadCloser, error) {
			return os.Open(nf.tmp)
		})
		if err != nil {
			return nil, "", err
		}
	}
	if err := wait(); err != nil {
		return nil, "", err
	}
	if err := u.put(ctx, HashPart(p)+".narinfo", contentTypeNarInfo, []byte(ni.String())); err != nil {
		return nil, "", err
	}
	return ni, uploaded, nil
}

// keepable says why the cache's narinfo ni of a path cannot be kept (and
// at most signed) as it is, or "" if it can: it must describe what the
// store has (NarHash, NarSize and References), and the NAR it names must be
// in the cache, with its FileSize when it gives one. Anyone who can write
// the cache may have planted it, and signing it would vouch for it: every
// node would then fail on it. An error is returned only when ctx ends.
func (u *Uploader) keepable(ctx context.Context, ni *NarInfo, narHash string, narSize uint64, refs []string) (string, error) {
	switch {
	case ni.NarHash != narHash:
		return fmt.Sprintf("has NarHash %s, the store %s", ni.NarHash, narHash), nil
	case ni.NarSize != narSize:
		return fmt.Sprintf("has NarSize %d, the store %d", ni.NarSize, narSize), nil
	case !slices.Equal(ni.References, refs):
		return fmt.Sprintf("has References %q, the store %q", ni.References, refs), nil
	}
	// Reading the NAR's last byte (or, without a FileSize, its first)
	// shows both that it is there and how long it is, without fetching it.
	off := int64(0)
	if ni.FileSize > 0 {
		off = int64(ni.FileSize) - 1
	}
	var tail []byte
	err := u.c.retry.do(ctx, fmt.Sprintf("check %s in %s", ni.URL, u.c.url), func() error {
		if err := u.c.sem.Acquire(ctx, 1); err != nil {
			return err
		}
		defer u.c.sem.Release(1)
		rc, err := u.c.be.open(ctx, ni.URL, off, false)
		if err != nil {
			return err
		}
		defer rc.Close()
		tail, err = io.ReadAll(io.LimitReader(rc, 2))
		return err
	})
	switch {
	case ctx.Err() != nil:
		return "", ctx.Err()
	case err != nil:
		return fmt.Sprintf("names the NAR %s, which cannot be read: %v", ni.URL, err), nil
	case ni.FileSize == 0 && len(tail) == 0:
		return fmt.Sprintf("names the NAR %s, which is empty", ni.URL), nil
	case ni.FileSize > 0 && len(tail) != 1:
		return fmt.Sprintf("names the NAR %s, which is not %d bytes long (FileSize)", ni.URL, ni.FileSize), nil
	}
	return "", nil
}

func compressionExt(method string) string {
	switch method {
	case "zstd":
		return ".zst"
	case "xz":
		return ".xz"
	}
	return ""
}

type narFile struct {
	tmp      string
	fileHash string // nix32
	fileSize uint64
}

type countingHash struct {
	h hash.Hash
	n uint64
}

func (c *countingHash) Write(p []byte) (int, error) {
	c.h.Write(p)
	c.n += uint64(len(p))
	return len(p), nil
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// dumpNar streams the NAR of p from the store through the compressor into
// a temporary file, hashing both the NAR and the file on the way, and
// checks the NAR against the store's hash and size.
func (u *Uploader) dumpNar(ctx context.Context, src Source, p, wantHash string, wantSize uint64) (*narFile, error) {
	dir := u.opts.TempDir
	if fb, ok := u.c.be.(*fileBackend); ok {
		dir = filepath.Join(fb.dir, "nar")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	tmp, err := os.CreateTemp(dir, ".tmp-nar-*")
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	fileSum := &countingHash{h: sha256.New()}
	fw := io.MultiWriter(tmp, fileSum)
	var comp io.WriteCloser
	switch u.opts.Compression {
	case "zstd":
		// The NAR's size is known, so the frame says it: a reader then
		// needs no more window than the NAR (capped at 1 MiB), which keeps
		// a node downloading many NARs at once small.
		var enc *zstd.Encoder
		enc, err = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20))
		if err == nil {
			enc.ResetContentSize(fw, int64(wantSize))
			comp = enc
		}
	case "xz":
		comp, err = xz.NewWriter(fw)
	default:
		comp = nopWriteCloser{fw}
	}
	if err != nil {
		return nil, err
	}
	narSum := &countingHash{h: sha256.New()}
	if _, err := src.NarFromPath(ctx, p, io.MultiWriter(comp, narSum)); err != nil {
		comp.Close()
		return nil, fmt.Errorf("reading the NAR of %s from the store: %w", p, err)
	}
	if err := comp.Close(); err != nil {
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	got := "sha256:" + nix32(narSum.h.Sum(nil))
	if got != wantHash || narSum.n != wantSize {
		return nil, fmt.Errorf("%w: the store sent a NAR of %s with %d bytes and hash %s, but its path info says %d bytes and %s",
			ErrHashMismatch, p, narSum.n, got, wantSize, wantHash)
	}
	ok = true
	return &narFile{tmp: tmp.Name(), fileHash: nix32(fileSum.h.Sum(nil)), fileSize: fileSum.n}, nil
}
