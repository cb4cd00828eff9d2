package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/nix-aurora/nix-aurora/aurora"
	"github.com/nix-aurora/nix-aurora/binarycache"
	"github.com/nix-aurora/nix-aurora/internal/human"
	"github.com/nix-aurora/nix-aurora/nixconf"
	"github.com/nix-aurora/nix-aurora/store"
)

type pushOptions struct {
	to          string
	secretKey   string
	noSign      bool
	jobs        int
	netrc       string
	compression string
	expr        exprOptions
}

func init() {
	var opts pushOptions
	register(&command{
		name:  "push",
		usage: "--to URL JOB.nix|DIR|JOB.json|STOREPATH...",
		summary: "Upload the closures that a job's nix_init processes realise (or of store paths) from the\n" +
			"local Nix store to a binary cache (file://DIR, or http(s):// by PUT), with signed narinfos\n" +
			"and a closure index per root. What the cache has already is skipped; a narinfo there that does\n" +
			"not match the store, or whose NAR is missing, is uploaded afresh, never re-signed. Job\n" +
			"expressions are built first; JSON files (or a build's ./result link) are read as they are.",
		flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&opts.to, "to", "", "the binary cache: file:///DIR, http://HOST/… or https://HOST/… (required)")
			fs.StringVar(&opts.secretKey, "secret-key", "", "sign with this key file (nix-store --generate-binary-cache-key); default $NIX_SECRET_KEY_FILE")
			fs.BoolVar(&opts.noSign, "no-sign", false, "upload without signing (nodes then need require-sigs = false)")
			fs.IntVarP(&opts.jobs, "jobs", "j", 4, "upload this many paths at once")
			fs.StringVar(&opts.netrc, "netrc", "", "HTTP credentials for the cache, in netrc format (default: nix.conf's netrc-file, as nix-init reads it)")
			fs.StringVar(&opts.compression, "compression", "zstd", "compress the NARs with zstd, xz or none, named as Nix's binary cache store names them (.nar.zst, .nar.xz, .nar). "+
				"zstd by default: decompressing is most of a node's work, and nix-init realises a zstd cache about 4x faster than an xz one "+
				"(BENCHMARKS.md); xz is smaller and what every Nix reads; none for data that does not compress")
			opts.expr.addFlags(fs)
		},
		run: func(ctx context.Context, e *env, args []string) error { return runPush(ctx, e, opts, args) },
	})
}

// pushRoot is a store path to push, and where it came from (for messages).
type pushRoot struct {
	path string
	from string
}

func runPush(ctx context.Context, e *env, opts pushOptions, args []string) error {
	if opts.to == "" {
		return usagef("--to URL is required: the binary cache to push to")
	}
	if len(args) == 0 {
		return usagef("nothing to push: give job expressions, job JSON files or store paths")
	}
	if u, err := url.Parse(opts.to); err != nil || (u.Scheme != "file" && u.Scheme != "http" && u.Scheme != "https") {
		return usagef("--to %q: want file:///DIR, http://… or https://…", opts.to)
	}
	if opts.jobs < 1 {
		return usagef("--jobs %d: want at least 1", opts.jobs)
	}
	switch opts.compression {
	case "zstd", "xz", "none":
	default:
		return usagef("--compression %q: want zstd, xz or none", opts.compression)
	}
	// A malformed --arg is a usage error before anything is read or built.
	_, err := opts.expr.nixArgs()
	if err != nil {
		return err
	}

	// The key first: a missing key should not cost a build.
	var key binarycache.SecretKey
	switch {
	case opts.noSign && opts.secretKey != "":
		return usagef("--no-sign and --secret-key contradict each other")
	case !opts.noSign:
		file := opts.secretKey
		if file == "" {
			file = os.Getenv("NIX_SECRET_KEY_FILE")
		}
		if file == "" {
			return usagef("no signing key: pass --secret-key FILE (made by nix-store --generate-binary-cache-key), " +
				"set NIX_SECRET_KEY_FILE, or push unsigned with --no-sign")
		}
		if key, err = binarycache.LoadSecretKey(file); err != nil {
			return fmt.Errorf("signing key: %w", err)
		}
	}
	// nix.conf is read once, and only if a setting is needed from it.
	conf := sync.OnceValues(nixconf.Load)
	netrc, err := pushNetrc(opts.netrc, conf)
	if err != nil {
		return err
	}

	// As `nix copy --to https://…` does: nix.conf's ssl-cert-file (else
	// NIX_SSL_CERT_FILE, SSL_CERT_FILE, Nix's default bundle).
	ca, err := pushCA(opts.to, conf)
	if err != nil {
		return err
	}

	var roots []pushRoot
	for _, arg := range args {
		r, err := pushRoots(ctx, e, arg, opts.expr)
		if err != nil {
			return err
		}
		roots = append(roots, r...)
	}

	pool := newStorePool(opts.jobs, func(ctx context.Context) (*store.Conn, error) { return store.Open(ctx, "") })
	defer pool.close()
	paths, err := checkRoots(ctx, pool, roots)
	if err != nil {
		return err
	}

	start := time.Now()
	var mu sync.Mutex
	var narBytes uint64
	up, err := binarycache.NewUploader(ctx, opts.to, key, binarycache.UploadOptions{
		Options: binarycache.Options{
			Netrc: netrc,
			CA:    ca,
			Logf: func(format string, args ...any) {
				mu.Lock()
				defer mu.Unlock()
				fmt.Fprintf(e.stderr, "nixaurora push: "+format+"\n", args...)
			},
		},
		Parallel:    opts.jobs,
		Unsigned:    opts.noSign,
		Compression: opts.compression,
		Progress: func(path, action string, ni *binarycache.NarInfo) {
			mu.Lock()
			defer mu.Unlock()
			switch action {
			case "uploaded":
				narBytes += ni.NarSize
				fmt.Fprintf(e.stderr, "uploaded %s (%s, NAR %s)\n", path, human.Bytes(ni.FileSize), human.Bytes(ni.NarSize))
			case "re-uploaded":
				narBytes += ni.NarSize
				fmt.Fprintf(e.stderr, "re-uploaded %s (%s, NAR %s), replacing the cache's narinfo\n", path, human.Bytes(ni.FileSize), human.Bytes(ni.NarSize))
			case "signed":
				fmt.Fprintf(e.stderr, "signed %s (the cache had it, without our signature)\n", path)
			}
		},
	})
	if err != nil {
		return err
	}
	res, err := up.Upload(ctx, pool, paths)
	if err != nil {
		return err
	}
	there := len(res.Skipped) + len(res.Signed)
	summary := fmt.Sprintf("pushed %s to %s: %d uploaded", human.Count(int64(len(paths)), "root", ""), up.URL(), len(res.Uploaded))
	if len(res.Uploaded) > 0 {
		summary += fmt.Sprintf(" (%s, NAR %s", human.Bytes(res.FileBytes), human.Bytes(narBytes))
		if n := len(res.Replaced); n > 0 {
			summary += fmt.Sprintf("; %d replacing a narinfo that could not be kept", n)
		}
		summary += ")"
	}
	summary += fmt.Sprintf(", %d already there", there)
	if len(res.Signed) > 0 {
		summary += fmt.Sprintf(" (%d newly signed)", len(res.Signed))
	}
	summary += fmt.Sprintf(", %s written", human.Count(int64(len(res.Indexes)), "closure index", "closure indexes"))
	if n := len(res.UnchangedIndexes); n > 0 {
		summary += fmt.Sprintf(" (%d unchanged)", n)
	}
	summary += fmt.Sprintf(", in %.2fs", time.Since(start).Seconds())
	fmt.Fprintln(e.stderr, summary)
	return nil
}

// pushNetrc reads the credentials for the cache: file, or else nix.conf's
// netrc-file, the one nix-init and Nix read, so that one file serves the
// pushes and the nodes. A missing file means no credentials.
func pushNetrc(file string, nixConf func() (*nixconf.Config, error)) (*binarycache.Netrc, error) {
	flag := "--netrc"
	if file == "" {
		conf, err := nixConf()
		if err != nil {
			return nil, fmt.Errorf("read nix.conf for its netrc-file: %w", err)
		}
		file, flag = conf.NetrcFile(), "nix.conf's netrc-file"
	}
	netrc, err := binarycache.LoadNetrc(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	return netrc, nil
}

// pushRoots finds what one argument asks to push: a store path as it is,
// the roots of a job JSON file's init processes, or those of the jobs a
// job expression builds to.
func pushRoots(ctx context.Context, e *env, arg string, expr exprOptions) ([]pushRoot, error) {
	// A build's out-link (./result) leads to its JSON; other links into the
	// store are store paths.
	resolved := resolve(arg)
	switch {
	case strings.HasSuffix(resolved, ".json"):
		jobs, err := readJobs(arg, false)
		if err != nil {
			return nil, err
		}
		return jobRoots(arg, jobs)
	case strings.HasPrefix(resolved, binarycache.StoreDir+"/"):
		// A path inside a store path stands for the store path, as in Nix.
		p := resolved
		if parts := strings.SplitN(strings.TrimPrefix(p, binarycache.StoreDir+"/"), "/", 2); len(parts) > 0 {
			p = binarycache.StoreDir + "/" + parts[0]
		}
		if err := store.ValidatePath(p); err != nil {
			return nil, usagef("argument %q: %v", arg, err)
		}
		return []pushRoot{{path: p, from: arg}}, nil
	}
	outs, err := expr.build(ctx, e, arg)
	if err != nil {
		return nil, err
	}
	var roots []pushRoot
	for _, o := range outs {
		r, err := jobRoots(fmt.Sprintf("%s (built from %s)", o.StorePath, arg), o.Jobs)
		if err != nil {
			return nil, err
		}
		roots = append(roots, r...)
	}
	return roots, nil
}

// jobRoots reads the roots the jobs' init processes realise: the
// NAME=/nix/store/… words of the nix_init and nix_init_final cmdlines.
func jobRoots(file string, jobs []aurora.Job) ([]pushRoot, error) {
	var roots []pushRoot
	for _, job := range jobs {
		inits, err := job.InitRoots()
		if err != nil {
			return nil, fmt.Errorf("%s: job %s: %w", file, job.Key(), err)
		}
		for _, r := range inits {
			where := fmt.Sprintf("%s: job %s: process %s", file, job.Key(), r.Process)
			if err := store.ValidatePath(r.Path); err != nil {
				return nil, fmt.Errorf("%s: argument %q: %w", where, r.Name+"="+r.Path, err)
			}
			roots = append(roots, pushRoot{path: r.Path, from: fmt.Sprintf("%s, root %s", where, r.Name)})
		}
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("%s: no nix_init or nix_init_final process realises a store path "+
			"(was it built with nixInit.enable = false?); pass the store paths to push instead", file)
	}
	return roots, nil
}

// checkRoots makes sure every root is valid in the local store (and holds
// a temporary GC root on each for as long as the pool's first connection
// lives, so that a garbage collection cannot take them meanwhile), and
// returns the paths, each once.
func checkRoots(ctx context.Context, pool *storePool, roots []pushRoot) (_ []string, err error) {
	conn, err := pool.get(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { pool.put(conn, err) }()
	var paths []string
	seen := map[string]bool{}
	for _, r := range roots {
		if !seen[r.path] {
			seen[r.path] = true
			paths = append(paths, r.path)
		}
	}
	for _, p := range paths {
		if err := conn.AddTempRoot(ctx, p); err != nil {
			return nil, fmt.Errorf("local store %s: %w", conn.Location(), err)
		}
	}
	valid, err := conn.QueryValidPaths(ctx, paths, false)
	if err != nil {
		return nil, fmt.Errorf("local store %s: %w", conn.Location(), err)
	}
	ok := map[string]bool{}
	for _, v := range valid {
		ok[v] = true
	}
	var missing []string
	for _, r := range roots {
		if !ok[r.path] {
			m := r.path
			if r.from != r.path {
				m += " (" + r.from + ")"
			}
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("not valid in the local store (%s), so there is nothing to upload: %s; build it here first (nixaurora build, nix-build), or push from where it was built",
			conn.Location(), strings.Join(missing, ", "))
	}
	return paths, nil
}

// storePool lends up to n connections to the local store, so that NARs of
// several paths can be read at once (a connection carries one request at a
// time). It is a binarycache.Source.
type storePool struct {
	open func(context.Context) (*store.Conn, error)
	idle chan *store.Conn
	slot chan struct{} // one token per open connection

	mu  sync.Mutex
	all map[*store.Conn]bool
}

func newStorePool(n int, open func(context.Context) (*store.Conn, error)) *storePool {
	return &storePool{
		open: open,
		idle: make(chan *store.Conn, n),
		slot: make(chan struct{}, n),
		all:  map[*store.Conn]bool{},
	}
}

func (p *storePool) get(ctx context.Context) (*store.Conn, error) {
	select {
	case c := <-p.idle:
		return c, nil
	default:
	}
	select {
	case c := <-p.idle:
		return c, nil
	case p.slot <- struct{}{}:
		c, err := p.open(ctx)
		if err != nil {
			<-p.slot
			return nil, fmt.Errorf("open the local Nix store: %w", err)
		}
		p.mu.Lock()
		p.all[c] = true
		p.mu.Unlock()
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// put returns a connection after a call that ended with err: a broken
// connection is closed rather than lent again.
func (p *storePool) put(c *store.Conn, err error) {
	if store.IsConnectionError(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		p.mu.Lock()
		delete(p.all, c)
		p.mu.Unlock()
		c.Close()
		<-p.slot
		return
	}
	p.idle <- c
}

func (p *storePool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.all {
		c.Close()
	}
	p.all = map[*store.Conn]bool{}
}

func (p *storePool) QueryPathInfo(ctx context.Context, path string) (*store.PathInfo, error) {
	c, err := p.get(ctx)
	if err != nil {
		return nil, err
	}
	info, err := c.QueryPathInfo(ctx, path)
	p.put(c, err)
	return info, err
}

func (p *storePool) NarFromPath(ctx context.Context, path string, w io.Writer) (*store.PathInfo, error) {
	c, err := p.get(ctx)
	if err != nil {
		return nil, err
	}
	info, err := c.NarFromPath(ctx, path, w)
	p.put(c, err)
	return info, err
}

// pushCA is the CA bundle an https cache is checked against (nil for
// other caches: Nix reads the bundle only for https).
func pushCA(to string, nixConf func() (*nixconf.Config, error)) (*binarycache.CA, error) {
	if !strings.HasPrefix(strings.ToLower(to), "https://") {
		return nil, nil
	}
	conf, err := nixConf()
	if err != nil {
		return nil, fmt.Errorf("read nix.conf: %w", err)
	}
	return binarycache.LoadCA(conf.SSLCertFile())
}
