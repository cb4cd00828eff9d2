package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/nix-aurora/nix-aurora/binarycache"
	"github.com/nix-aurora/nix-aurora/localstore"
	"github.com/nix-aurora/nix-aurora/nixconf"
	"github.com/nix-aurora/nix-aurora/realise"
	"github.com/nix-aurora/nix-aurora/store"
)

// storeOptions are the flags that say which store to use and how it
// substitutes; shared by realising and `status`.
type storeOptions struct {
	store        string
	substituters []string
	trustedKeys  []string
	nixDaemon    string
	jobs         int
	imports      int
	gcRootDir    string
	verbose      bool
	via          string // "auto", "direct" or "daemon"
	unpack       bool
}

func (o *storeOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.store, "store", "", "the Nix store: auto, daemon, unix:///SOCKET, local, local?root=DIR or DIR (default $NIX_REMOTE, else auto)")
	fs.StringArrayVar(&o.substituters, "substituter", nil, "binary cache URL to substitute from (repeatable; replaces nix.conf's substituters)")
	fs.StringArrayVar(&o.trustedKeys, "trusted-public-key", nil, "trusted cache key NAME:BASE64 (repeatable; replaces nix.conf's trusted-public-keys)")
	fs.StringVar(&o.nixDaemon, "nix-daemon", "", "nix-daemon program for single-user mode (default: found on PATH or in the default profile)")
	fs.IntVar(&o.jobs, "jobs", 16, "paths substituted in parallel")
	fs.IntVar(&o.imports, "imports", realise.DefaultDirectImports, "store connections importing fetched paths in parallel (direct substitution)")
	fs.StringVar(&o.gcRootDir, "gc-root-dir", ".gc", "directory of the GC root links")
	fs.BoolVar(&o.unpack, "unpack", true, "single-user mode, direct substitution: unpack fetched paths straight into the store and register them a batch per transaction (nix-store --load-db) instead of importing each through nix-daemon")
	fs.StringVar(&o.via, "via", "auto", "how to substitute: direct (fetch NARs from the caches ourselves, in parallel, verified), daemon (let the store substitute), auto (direct when substituters are known and signatures required)")
}

// settings are the node's settings with the flags applied on top.
type settings struct {
	location     store.Location
	substituters []string
	trustedKeys  []string
	fromFlags    bool // substituters came from flags
	connectTO    time.Duration
	conf         *nixconf.Config
}

func (o *storeOptions) resolve(e *env) (*settings, error) {
	conf, err := nixconf.Load()
	if err != nil {
		return nil, fmt.Errorf("read nix.conf: %w", err)
	}
	s := &settings{
		substituters: conf.Substituters(),
		trustedKeys:  conf.TrustedPublicKeys(),
		connectTO:    conf.ConnectTimeout(),
		conf:         conf,
	}
	if len(o.substituters) > 0 {
		s.substituters = o.substituters
		s.fromFlags = true
	}
	if len(o.trustedKeys) > 0 {
		s.trustedKeys = o.trustedKeys
	}
	uri := o.store
	if uri == "" {
		uri = e.getenv("NIX_REMOTE")
	}
	loc, err := store.ParseURI(uri)
	if err != nil {
		return nil, usageError{fmt.Sprintf("--store %q: %v", uri, err)}
	}
	if s.location, err = store.Resolve(loc); err != nil {
		return nil, fmt.Errorf("find the Nix store: %w", err)
	}
	if o.jobs < 1 {
		return nil, usageError{"--jobs must be at least 1"}
	}
	switch o.via {
	case "auto", "direct", "daemon":
	default:
		return nil, usageError{fmt.Sprintf("--via %q: want auto, direct or daemon", o.via)}
	}
	return s, nil
}

// connect opens a connection to the resolved store and passes on what the
// flags chose. An untrusted client's substituters are filtered by the daemon
// (trusted-substituters) and its keys ignored: the daemon's keys rule.
func (o *storeOptions) connect(ctx context.Context, s *settings) (*store.Conn, error) {
	var conn *store.Conn
	var err error
	if s.location.Mode == store.Daemon {
		conn, err = store.Dial(ctx, s.location.Socket)
	} else {
		conn, err = store.Spawn(ctx, store.StdioOptions{NixDaemon: o.findNixDaemon(), Store: s.location.Store})
	}
	if err != nil {
		return nil, err
	}
	opts := store.DefaultOptions()
	opts.MaxBuildJobs = uint64(o.jobs) // in Nix 2.8 substitutions share the build slots
	// Warnings ("ignoring untrusted substituter", retries) explain failures;
	// -v asks for the daemon's informational lines too.
	opts.Verbosity = store.LvlWarn
	if o.verbose {
		opts.Verbosity = store.LvlInfo
	}
	opts.Overrides = map[string]string{}
	if len(o.substituters) > 0 {
		opts.Overrides["substituters"] = strings.Join(o.substituters, " ")
	}
	if len(o.trustedKeys) > 0 {
		opts.Overrides["trusted-public-keys"] = strings.Join(o.trustedKeys, " ")
	}
	if s.location.Mode == store.Local {
		// Our own store: a path asked for before it was pushed must not be
		// remembered as missing for an hour.
		opts.Overrides["narinfo-cache-negative-ttl"] = "0"
	}
	if s.connectTO > 0 {
		opts.Overrides["connect-timeout"] = strconv.Itoa(int(s.connectTO.Seconds()))
	}
	if err := conn.SetOptions(ctx, opts); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// findNixDaemon looks for nix-daemon where a node keeps it: Thermos gives
// processes only the runner's PATH, so look in the profiles too.
func (o *storeOptions) findNixDaemon() string {
	if o.nixDaemon != "" {
		return o.nixDaemon
	}
	if p, err := exec.LookPath("nix-daemon"); err == nil {
		return p
	}
	candidates := []string{
		"/nix/var/nix/profiles/default/bin/nix-daemon",
		"/run/current-system/sw/bin/nix-daemon",
		"/usr/bin/nix-daemon",
	}
	if home, err := os.UserHomeDir(); err == nil {
		candidates = append(candidates, filepath.Join(home, ".nix-profile/bin/nix-daemon"))
	}
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() {
			return c
		}
	}
	return "nix-daemon"
}

// substituter chooses how missing paths are fetched. Direct fetches NARs
// itself (one plan, parallel downloads, every narinfo verified against the
// trusted keys before anything is downloaded); it never imports unsigned
// paths, so with require-sigs = false the store's own substitution is used.
func (o *storeOptions) substituter(st *settings) (realise.Substituter, error) {
	direct := o.via == "direct" || (o.via == "auto" && len(st.substituters) > 0 && st.conf.RequireSigs())
	if !direct {
		return realise.Daemon{}, nil
	}
	keys, err := binarycache.ParsePublicKeys(strings.Join(st.trustedKeys, " "))
	if err != nil {
		return nil, usageError{fmt.Sprintf("trusted public keys: %v", err)}
	}
	netrc, err := binarycache.LoadNetrc(st.conf.NetrcFile())
	if err != nil {
		return nil, fmt.Errorf("read netrc: %w", err)
	}
	ca, err := loadCA(st)
	if err != nil {
		return nil, err
	}
	local, err := o.localStore(st)
	if err != nil {
		return nil, err
	}
	return &realise.Direct{
		Local: local,
		URLs:  st.substituters,
		Options: binarycache.Options{
			TrustedKeys:    keys,
			Netrc:          netrc,
			CA:             ca,
			ConnectTimeout: st.connectTO,
			StallTimeout:   st.conf.StalledDownloadTimeout(),
			Attempts:       downloadAttempts(st.conf),
			// Nix's 0 means no limit; ours would mean the default.
			MaxConnections: cmp.Or(st.conf.HTTPConnections(), 1<<16),
		},
		Jobs:     o.jobs,
		Imports:  o.imports,
		Fallback: realise.Daemon{},
	}, nil
}

// loadCA reads the CA bundle https caches are checked against, as Nix
// decides it (ssl-cert-file, else NIX_SSL_CERT_FILE, else SSL_CERT_FILE,
// else the first default bundle that exists), so that a bad one fails now
// rather than as a TLS error later. Only when a substituter is https: Nix
// too reads the bundle only for https downloads.
func loadCA(st *settings) (*binarycache.CA, error) {
	if !slices.ContainsFunc(st.substituters, func(u string) bool {
		return strings.HasPrefix(strings.ToLower(u), "https://")
	}) {
		return nil, nil
	}
	return binarycache.LoadCA(st.conf.SSLCertFile())
}

// downloadAttempts is nix.conf's download-attempts (0, the default, when
// unset or not a positive number), which the daemon's own substitution
// honours too.
func downloadAttempts(conf *nixconf.Config) int {
	v, ok := conf.Get("download-attempts")
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 1 {
		return 0
	}
	return n
}

// localStore is the store to unpack into in single-user mode (--unpack),
// or nil: in daemon mode, or when nix.conf asks for auto-optimise-store
// (which Nix does at import, and an unpacked path would miss).
func (o *storeOptions) localStore(st *settings) (*localstore.Store, error) {
	if !o.unpack || st.location.Mode != store.Local {
		return nil, nil
	}
	if v, _ := st.conf.Get("auto-optimise-store"); strings.TrimSpace(v) == "true" {
		return nil, nil
	}
	dir := filepath.Join("/", st.location.Root, "nix/store")
	nixStore := "nix-store"
	if d := o.findNixDaemon(); filepath.IsAbs(d) {
		if p := filepath.Join(filepath.Dir(d), "nix-store"); isExecutable(p) {
			nixStore = p
		}
	}
	return &localstore.Store{Dir: dir, NixStore: nixStore, StoreArg: st.location.Store}, nil
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}
