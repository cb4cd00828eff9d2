// Package nixconf reads a node's Nix settings the way Nix 2.8 reads them.
//
// Load reads, in Nix's order, the system file $NIX_CONF_DIR/nix.conf
// (default /etc/nix/nix.conf), the user files ($NIX_USER_CONF_FILES, or
// $XDG_CONFIG_HOME/nix/nix.conf and $XDG_CONFIG_DIRS/nix/nix.conf), and
// finally the contents of $NIX_CONFIG. Later assignments override earlier
// ones, except `extra-NAME = ...`, which appends to NAME.
//
// One setting follows newer Nix (2.15 and later): ssl-cert-file, the CA
// bundle for https:// downloads (see SSLCertFile). Nix 2.8 only reads
// NIX_SSL_CERT_FILE and SSL_CERT_FILE and ignores the setting in nix.conf;
// a node whose nix.conf names it runs a Nix that honours it.
//
// The syntax is that of Nix's applyConfig: one `name = value` per line, where
// `=` must stand alone between whitespace; `#` starts a comment anywhere in a
// line; `include PATH` reads another file (an error if it is missing) and
// `!include PATH` does the same but ignores a missing file, PATH being
// relative to the including file's directory. Unknown settings are kept, not
// rejected. A malformed line, or an invalid value for one of the typed
// settings this package knows (booleans, unsigned integers), is an error that
// names the file and the line.
//
// A Config is not safe for concurrent mutation; reading it from several
// goroutines once loaded (and overridden) is fine.
package nixconf

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

const (
	// DefaultConfDir is the directory of the system nix.conf when
	// NIX_CONF_DIR is unset (Debian's and upstream's default).
	DefaultConfDir = "/etc/nix"

	// DefaultSubstituter is Nix's default for `substituters` (for the store
	// directory /nix/store).
	DefaultSubstituter = "https://cache.nixos.org/"

	// DefaultPublicKey is Nix 2.8's default for `trusted-public-keys`.
	DefaultPublicKey = "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="
)

// kind is the type of a setting this package knows; it decides how values
// are validated and whether extra-NAME may append to it.
type kind int

const (
	kindString kind = iota // any value; extra-NAME is not appendable
	kindList               // whitespace-separated list; extra-NAME appends
	kindBool               // true/yes/1 or false/no/0
	kindUint               // unsigned decimal
)

type spec struct {
	kind kind
	def  string // default value (for netrc-file: computed from the conf dir)
}

// specs are the settings whose types and defaults (as in Nix 2.8) matter to
// this project. Everything else is kept as an untyped string that extra-NAME
// appends to.
var specs = map[string]spec{
	"substituters":               {kindList, DefaultSubstituter},
	"trusted-substituters":       {kindList, ""},
	"trusted-public-keys":        {kindList, DefaultPublicKey},
	"secret-key-files":           {kindList, ""},
	"require-sigs":               {kindBool, "true"},
	"netrc-file":                 {kindString, ""},
	"connect-timeout":            {kindUint, "0"},
	"stalled-download-timeout":   {kindUint, "300"},
	"download-attempts":          {kindUint, "5"},
	"http-connections":           {kindUint, "25"},
	"narinfo-cache-negative-ttl": {kindUint, "3600"},
	"narinfo-cache-positive-ttl": {kindUint, "2592000"},
	"fallback":                   {kindBool, "false"},
	"substitute":                 {kindBool, "true"},
	"trusted-users":              {kindList, "root"},
	"allowed-users":              {kindList, "*"},
	"experimental-features":      {kindList, ""},
	"build-users-group":          {kindString, ""},
	"ssl-cert-file":              {kindString, ""}, // default: see SSLCertFile
}

// DefaultSSLCertFiles are the CA bundles Nix (2.8 to 2.34) takes for
// ssl-cert-file, the first that exists, when neither the setting nor
// NIX_SSL_CERT_FILE nor SSL_CERT_FILE names one.
var DefaultSSLCertFiles = []string{
	"/etc/ssl/certs/ca-certificates.crt",
	"/nix/var/nix/profiles/default/etc/ssl/certs/ca-bundle.crt",
}

// aliases are Nix 2.8's old names for the settings above.
var aliases = map[string]string{
	"binary-caches":            "substituters",
	"trusted-binary-caches":    "trusted-substituters",
	"binary-cache-public-keys": "trusted-public-keys",
	"build-fallback":           "fallback",
	"build-use-substitutes":    "substitute",
}

// canonical resolves an alias to the setting's name.
func canonical(name string) string {
	if a, ok := aliases[name]; ok {
		return a
	}
	return name
}

type value struct {
	v      string
	origin string
}

// Config is the merged result of Nix's configuration sources.
type Config struct {
	confDir  string
	values   map[string]value
	files    []string
	warnings []string
	// sslEnv is NIX_SSL_CERT_FILE's or SSL_CERT_FILE's value (origin: the
	// variable's name), the default of ssl-cert-file; v == "" when unset.
	sslEnv value
	// sslDefaults are the candidates for ssl-cert-file's default.
	sslDefaults []string
}

// New returns a Config holding only Nix's defaults, for a node whose
// configuration directory (NIX_CONF_DIR) is confDir; "" means
// DefaultConfDir. The directory only decides the default netrc-file.
func New(confDir string) *Config {
	if confDir == "" {
		confDir = DefaultConfDir
	}
	return &Config{confDir: filepath.Clean(confDir), values: map[string]value{}, sslDefaults: DefaultSSLCertFiles}
}

// ConfDir is the configuration directory (NIX_CONF_DIR) the Config was
// loaded for.
func (c *Config) ConfDir() string { return c.confDir }

// Files lists the configuration files that were read, in the order they
// were applied (included files appear where they were included).
func (c *Config) Files() []string { return append([]string(nil), c.files...) }

// Warnings lists what Nix would silently skip but a user may want to know:
// configuration files that exist but could not be read.
func (c *Config) Warnings() []string { return append([]string(nil), c.warnings...) }

func (c *Config) def(name string) (string, bool) {
	switch name {
	case "netrc-file":
		return filepath.Join(c.confDir, "netrc"), true
	case "ssl-cert-file":
		if c.sslEnv.v != "" {
			return c.sslEnv.v, true
		}
		for _, f := range c.sslDefaults {
			if _, err := os.Stat(f); err == nil {
				return f, true
			}
		}
		return "", true
	}
	s, ok := specs[name]
	return s.def, ok
}

// Get returns the effective value of a setting (aliases such as
// binary-caches are resolved): the last assigned value, else Nix's default
// for the settings this package knows. ok is false only for a setting that
// was never assigned and has no known default. List values are joined by
// single spaces, as Nix shows them.
func (c *Config) Get(name string) (string, bool) {
	name = canonical(name)
	if v, ok := c.values[name]; ok {
		return v.v, true
	}
	return c.def(name)
}

// IsSet reports whether a setting was assigned by a file, NIX_CONFIG or
// Override (as opposed to holding its default).
func (c *Config) IsSet(name string) bool {
	_, ok := c.values[canonical(name)]
	return ok
}

// Origin says where a setting's value comes from: "FILE:LINE",
// "NIX_CONFIG:LINE", "override", or "default" when it was never assigned
// (for ssl-cert-file: "NIX_SSL_CERT_FILE" or "SSL_CERT_FILE" when its
// default comes from the environment). For a value built by extra-NAME, it
// is the last assignment's origin.
func (c *Config) Origin(name string) string {
	name = canonical(name)
	if v, ok := c.values[name]; ok {
		return v.origin
	}
	if name == "ssl-cert-file" && c.sslEnv.v != "" {
		return c.sslEnv.origin
	}
	return "default"
}

// Names lists the settings that were assigned, sorted.
func (c *Config) Names() []string {
	names := make([]string, 0, len(c.values))
	for n := range c.values {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// List returns a setting's value split on whitespace (nil when empty or
// unknown).
func (c *Config) List(name string) []string {
	v, _ := c.Get(name)
	f := strings.Fields(v)
	if len(f) == 0 {
		return nil
	}
	return f
}

// Substituters is `substituters`: https://cache.nixos.org/ unless set. An
// explicitly empty `substituters =` gives none.
func (c *Config) Substituters() []string { return c.List("substituters") }

// TrustedSubstituters is `trusted-substituters` (empty by default).
func (c *Config) TrustedSubstituters() []string { return c.List("trusted-substituters") }

// TrustedPublicKeys is `trusted-public-keys`: the cache.nixos.org-1 key
// unless set.
func (c *Config) TrustedPublicKeys() []string { return c.List("trusted-public-keys") }

// RequireSigs is `require-sigs` (true by default).
func (c *Config) RequireSigs() bool {
	v, _ := c.Get("require-sigs")
	b, _ := parseBool(v)
	return b
}

// NetrcFile is `netrc-file`: $NIX_CONF_DIR/netrc unless set.
func (c *Config) NetrcFile() string {
	v, _ := c.Get("netrc-file")
	return v
}

// SSLCertFile is `ssl-cert-file`, the PEM bundle of the CA certificates
// that https:// caches must chain to, and where it comes from (Origin), as
// Nix 2.15 to 2.34 decide it:
//
//  1. the setting, from nix.conf, NIX_CONFIG or Override, even when it names
//     a file that does not exist (which fails later, as curl does in Nix);
//  2. else NIX_SSL_CERT_FILE if it is set and not empty; if it is set to
//     "", SSL_CERT_FILE is not consulted (Nix's getEnv(...).value_or);
//  3. else SSL_CERT_FILE if it is set and not empty;
//  4. else the first of DefaultSSLCertFiles that exists.
//
// "" (no default exists, or an explicit `ssl-cert-file =`) means no file:
// the TLS library's own roots, as curl's built-in bundle in Nix. The
// environment is the one LoadEnv was given; a Config from New, LoadFiles
// or Parse has none.
func (c *Config) SSLCertFile() (file, origin string) {
	v, _ := c.Get("ssl-cert-file")
	return v, c.Origin("ssl-cert-file")
}

// ConnectTimeout is `connect-timeout`; 0 means unset (curl's default).
func (c *Config) ConnectTimeout() time.Duration { return c.seconds("connect-timeout") }

// StalledDownloadTimeout is `stalled-download-timeout` (300 s by default):
// a transfer slower than 1 byte/s for this long is aborted.
func (c *Config) StalledDownloadTimeout() time.Duration {
	return c.seconds("stalled-download-timeout")
}

// HTTPConnections is http-connections: how many connections Nix opens to
// binary caches at once (0, Nix's "no limit", is returned as 0).
func (c *Config) HTTPConnections() int {
	v, _ := c.Get("http-connections")
	n, _ := strconv.ParseUint(v, 10, 16)
	return int(n)
}

func (c *Config) seconds(name string) time.Duration {
	v, _ := c.Get(name)
	n, _ := strconv.ParseUint(v, 10, 32)
	return time.Duration(n) * time.Second
}

// Override sets a setting from the command line. Unlike extra-NAME in a
// file, it replaces the value (`--substituters a b` means exactly a and b;
// an empty value means none); a name of the form extra-NAME appends, as
// Nix's `--option extra-NAME` does. The value is validated like a file's.
func (c *Config) Override(name, val string) error {
	if err := c.set(name, strings.Join(strings.Fields(val), " "), "override"); err != nil {
		return fmt.Errorf("nixconf: %w", err)
	}
	return nil
}

// OverrideList is Override for a list setting given as separate items.
func (c *Config) OverrideList(name string, vals []string) error {
	return c.Override(name, strings.Join(vals, " "))
}

// set applies one assignment, as Nix's Config::set does.
func (c *Config) set(name, val, origin string) error {
	name = canonical(name)
	appendTo := ""
	if rest, ok := strings.CutPrefix(name, "extra-"); ok {
		target := canonical(rest)
		s, known := specs[target]
		// Nix appends only to list settings; extra-X for a known scalar X is
		// itself an unknown setting, kept under its own name.
		if !known || s.kind == kindList {
			appendTo = target
		}
	}
	if appendTo != "" {
		old, _ := c.Get(appendTo)
		if old != "" && val != "" {
			val = old + " " + val
		} else if old != "" {
			val = old
		}
		name = appendTo
	}
	if err := validate(name, val); err != nil {
		return err
	}
	c.values[name] = value{v: val, origin: origin}
	return nil
}

func validate(name, val string) error {
	switch specs[name].kind {
	case kindBool:
		if _, ok := parseBool(val); !ok {
			return fmt.Errorf("Boolean setting '%s' has invalid value '%s'", name, val)
		}
	case kindUint:
		if _, err := strconv.ParseUint(val, 10, 32); err != nil {
			return fmt.Errorf("setting '%s' has invalid value '%s'", name, val)
		}
	}
	return nil
}

func parseBool(s string) (bool, bool) {
	switch s {
	case "true", "yes", "1":
		return true, true
	case "false", "no", "0":
		return false, true
	}
	return false, false
}
