package nixconf

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strings"
)

// maxIncludeDepth bounds include nesting, so that a cycle is an error
// rather than (as in Nix) a stack overflow.
const maxIncludeDepth = 32

// LineError is a malformed or invalid line of a configuration source.
type LineError struct {
	File string // the file's path, or "NIX_CONFIG", or "(input)" for Parse
	Line int    // 1-based
	Err  error
}

func (e *LineError) Error() string {
	return fmt.Sprintf("nixconf: %s:%d: %v", e.File, e.Line, e.Err)
}

func (e *LineError) Unwrap() error { return e.Err }

// Load reads the node's configuration from the process environment, like
// Nix 2.8 does. See LoadEnv.
func Load() (*Config, error) { return LoadEnv(os.Environ()) }

// LoadEnv reads the configuration as Nix 2.8 would in a process whose
// environment is environ ("KEY=VALUE" entries; the last one of a key wins,
// as in os/exec):
//
//  1. $NIX_CONF_DIR/nix.conf (NIX_CONF_DIR unset or empty: /etc/nix).
//  2. The user files, applied in reverse order so that the first one listed
//     wins: NIX_USER_CONF_FILES (colon-separated; set but empty means none)
//     if it is set, else $XDG_CONFIG_HOME/nix/nix.conf (default
//     $HOME/.config/nix/nix.conf) followed by D/nix/nix.conf for each D of
//     $XDG_CONFIG_DIRS (default /etc/xdg).
//  3. The contents of NIX_CONFIG, if set. Includes in it must be absolute,
//     as in Nix.
//
// NIX_SSL_CERT_FILE and SSL_CERT_FILE are read too: they replace the
// default of ssl-cert-file (see SSLCertFile).
//
// A configuration file that does not exist is skipped, as in Nix; one that
// exists but cannot be read is skipped too and reported by Warnings.
func LoadEnv(environ []string) (*Config, error) {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	confDir := env["NIX_CONF_DIR"]
	if confDir == "" {
		confDir = DefaultConfDir
	}
	if abs, err := filepath.Abs(confDir); err == nil {
		confDir = abs
	}
	c := New(confDir)
	// Nix's FileTransferSettings constructor: the environment replaces
	// ssl-cert-file's default before any configuration is read.
	for _, k := range []string{"NIX_SSL_CERT_FILE", "SSL_CERT_FILE"} {
		if v, ok := env[k]; ok {
			c.sslEnv = value{v: v, origin: k}
			break
		}
	}
	if err := c.applyTopFile(filepath.Join(confDir, "nix.conf")); err != nil {
		return nil, err
	}
	files, err := userConfFiles(env)
	if err != nil {
		return nil, err
	}
	for i := len(files) - 1; i >= 0; i-- {
		if err := c.applyTopFile(files[i]); err != nil {
			return nil, err
		}
	}
	if v, ok := env["NIX_CONFIG"]; ok {
		if err := c.apply(strings.NewReader(v), "NIX_CONFIG", "", 0); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// userConfFiles is Nix 2.8's getUserConfigFiles.
func userConfFiles(env map[string]string) ([]string, error) {
	if v, ok := env["NIX_USER_CONF_FILES"]; ok {
		return splitPath(v), nil
	}
	configHome, ok := env["XDG_CONFIG_HOME"]
	if !ok {
		home, ok := env["HOME"]
		if !ok {
			u, err := user.Current()
			if err != nil {
				return nil, fmt.Errorf("nixconf: HOME is unset and the user's home directory is unknown: %w", err)
			}
			home = u.HomeDir
		}
		configHome = home + "/.config"
	}
	dirs, ok := env["XDG_CONFIG_DIRS"]
	if !ok {
		dirs = "/etc/xdg"
	}
	// Nix joins with "/" (so XDG_CONFIG_HOME set but empty gives
	// /nix/nix.conf) and drops empty entries of XDG_CONFIG_DIRS.
	files := []string{configHome + "/nix/nix.conf"}
	for _, d := range splitPath(dirs) {
		files = append(files, d+"/nix/nix.conf")
	}
	return files, nil
}

func splitPath(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ":") {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// LoadFiles applies the given files in order (later ones override earlier
// ones) on top of the defaults for confDir ("" = DefaultConfDir). Missing
// files are skipped, as Nix skips a missing nix.conf.
func LoadFiles(confDir string, files ...string) (*Config, error) {
	c := New(confDir)
	for _, f := range files {
		if err := c.applyTopFile(f); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Parse reads one configuration from r on top of the defaults. dir is the
// directory relative includes are resolved against and the conf dir used
// for defaults ("" = DefaultConfDir, and relative includes are errors).
// Errors name the source "(input)".
func Parse(r io.Reader, dir string) (*Config, error) {
	c := New(dir)
	if err := c.Apply(r, "(input)", dir); err != nil {
		return nil, err
	}
	return c, nil
}

// Apply reads more configuration from r into c, as if it were a file named
// name (used in errors and Origin) in directory dir (for relative includes;
// "" makes them errors).
func (c *Config) Apply(r io.Reader, name, dir string) error {
	return c.apply(r, name, dir, 0)
}

// applyTopFile applies a top-level configuration file: missing is fine.
func (c *Config) applyTopFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			c.warnings = append(c.warnings, fmt.Sprintf("skipped %s: %v", path, err))
		}
		return nil
	}
	c.files = append(c.files, path)
	return c.apply(bytes.NewReader(data), path, filepath.Dir(path), 0)
}

func (c *Config) apply(r io.Reader, name, dir string, depth int) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		raw := sc.Text()
		line := raw
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		tokens := strings.FieldsFunc(line, func(r rune) bool {
			return r == ' ' || r == '\t' || r == '\r' || r == '\n'
		})
		if len(tokens) == 0 {
			continue
		}
		lineErr := func(err error) error { return &LineError{File: name, Line: lineNo, Err: err} }
		illegal := func() error {
			return lineErr(fmt.Errorf("illegal configuration line '%s'", strings.TrimRight(line, " \t\r")))
		}
		if len(tokens) < 2 {
			return illegal()
		}
		if tokens[0] == "include" || tokens[0] == "!include" {
			if len(tokens) != 2 {
				return illegal()
			}
			if err := c.include(tokens[1], tokens[0] == "!include", name, dir, depth); err != nil {
				var le *LineError
				if errors.As(err, &le) {
					return err // a line of the included file: report that one
				}
				return lineErr(err)
			}
			continue
		}
		if tokens[1] != "=" {
			return illegal()
		}
		val := strings.Join(tokens[2:], " ")
		if err := c.set(tokens[0], val, fmt.Sprintf("%s:%d", name, lineNo)); err != nil {
			return lineErr(err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("nixconf: reading %s: %w", name, err)
	}
	return nil
}

func (c *Config) include(path string, optional bool, from, dir string, depth int) error {
	if !filepath.IsAbs(path) {
		if dir == "" {
			return fmt.Errorf("include '%s': not an absolute path (relative includes need a file to be relative to)", path)
		}
		path = filepath.Join(dir, path)
	}
	path = filepath.Clean(path)
	if depth >= maxIncludeDepth {
		return fmt.Errorf("include '%s': nested more than %d deep (an include cycle?)", path, maxIncludeDepth)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if optional {
				return nil
			}
			return fmt.Errorf("file '%s' included from '%s' not found", path, from)
		}
		// Nix silently skips a file that exists but cannot be read.
		c.warnings = append(c.warnings, fmt.Sprintf("skipped %s (included from %s): %v", path, from, err))
		return nil
	}
	c.files = append(c.files, path)
	return c.apply(bytes.NewReader(data), path, filepath.Dir(path), depth+1)
}
