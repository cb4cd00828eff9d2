package nixconf

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/internal/testnix"
)

// writeFiles creates files (relative name -> contents) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// isolatedEnv is an environment with no user files, the conf dir d/etc and
// the home d/home.
func isolatedEnv(d string) []string {
	return []string{"NIX_CONF_DIR=" + d + "/etc", "NIX_USER_CONF_FILES=", "HOME=" + d + "/home"}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	type want map[string]string // setting -> effective value
	tests := []struct {
		name  string
		files map[string]string // relative to the temp dir D; etc/nix.conf is the system file
		env   []string          // extra env; "@" is replaced by D
		want  want
		unset []string // settings that must have no value
	}{
		{
			name: "comments and whitespace",
			files: map[string]string{"etc/nix.conf": "# a comment\n\n  substituters =   http://a   http://b # trailing\n" +
				"\tconnect-timeout = 5\r\nfoo = bar#baz\nempty =\n"},
			want: want{"substituters": "http://a http://b", "connect-timeout": "5", "foo": "bar", "empty": ""},
		},
		{
			name:  "later assignment overrides",
			files: map[string]string{"etc/nix.conf": "substituters = http://a\nsubstituters = http://b\n"},
			want:  want{"substituters": "http://b"},
		},
		{
			name: "relative and nested includes",
			files: map[string]string{
				"etc/nix.conf":      "substituters = http://first\ninclude sub/a.conf\nrequire-sigs = false\n",
				"etc/sub/a.conf":    "include b.conf\nrequire-sigs = true\n",
				"etc/sub/b.conf":    "substituters = http://nested\n!include missing.conf\n",
				"etc/unrelated.txt": "",
			},
			want: want{"substituters": "http://nested", "require-sigs": "false"},
		},
		{
			name:  "absolute include",
			files: map[string]string{"etc/nix.conf": "include @/other/x.conf\n", "other/x.conf": "netrc-file = /x/netrc\n"},
			want:  want{"netrc-file": "/x/netrc"},
		},
		{
			name:  "missing !include is ignored",
			files: map[string]string{"etc/nix.conf": "!include nope.conf\nfoo = 1\n"},
			want:  want{"foo": "1"},
		},
		{
			name:  "extra- appends to the default",
			files: map[string]string{"etc/nix.conf": "extra-substituters = http://x\nextra-trusted-public-keys = k:1\n"},
			want: want{"substituters": DefaultSubstituter + " http://x",
				"trusted-public-keys": DefaultPublicKey + " k:1"},
		},
		{
			name:  "extra- appends to an assignment, and a later assignment replaces",
			files: map[string]string{"etc/nix.conf": "substituters = http://a\nextra-substituters = http://b\nextra-trusted-substituters = http://t\ntrusted-public-keys = k:1\nextra-trusted-public-keys = k:2\ntrusted-public-keys = k:3\n"},
			want:  want{"substituters": "http://a http://b", "trusted-substituters": "http://t", "trusted-public-keys": "k:3"},
		},
		{
			name:  "aliases",
			files: map[string]string{"etc/nix.conf": "binary-caches = http://a\nextra-binary-caches = http://b\nbinary-cache-public-keys = k:1\ntrusted-binary-caches = http://t\n"},
			want:  want{"substituters": "http://a http://b", "trusted-public-keys": "k:1", "trusted-substituters": "http://t"},
		},
		{
			name:  "extra- of unknown settings appends; of known scalars it is its own unknown setting",
			files: map[string]string{"etc/nix.conf": "foo = a\nextra-foo = b\nextra-bar = c\nextra-require-sigs = false\n"},
			want:  want{"foo": "a b", "bar": "c", "extra-require-sigs": "false", "require-sigs": "true"},
		},
		{
			name:  "defaults",
			files: map[string]string{},
			want: want{"substituters": DefaultSubstituter, "trusted-public-keys": DefaultPublicKey,
				"require-sigs": "true", "netrc-file": "@/etc/netrc", "connect-timeout": "0",
				"stalled-download-timeout": "300", "trusted-substituters": ""},
			unset: []string{"no-such-setting"},
		},
		{
			name:  "explicitly empty substituters means none",
			files: map[string]string{"etc/nix.conf": "substituters =\n"},
			want:  want{"substituters": ""},
		},
		{
			name:  "NIX_CONFIG wins over the files",
			files: map[string]string{"etc/nix.conf": "substituters = http://file\nconnect-timeout = 1\n"},
			env:   []string{"NIX_CONFIG=substituters = http://env\nextra-substituters = http://env2\n!include @/etc/none"},
			want:  want{"substituters": "http://env http://env2", "connect-timeout": "1"},
		},
		{
			name: "user files: the first listed wins, all override the system file",
			files: map[string]string{
				"etc/nix.conf": "substituters = http://etc\nfoo = etc\nbar = etc\n",
				"u1.conf":      "substituters = http://u1\n",
				"u2.conf":      "extra-substituters = http://u2\nfoo = u2\n",
			},
			env:  []string{"NIX_USER_CONF_FILES=@/u1.conf::@/u2.conf:@/missing.conf"},
			want: want{"substituters": "http://u1", "foo": "u2", "bar": "etc"},
		},
		{
			name: "XDG user files",
			files: map[string]string{
				"etc/nix.conf":           "a = etc\nb = etc\nc = etc\n",
				"cfghome/nix/nix.conf":   "a = home\n",
				"xdg1/nix/nix.conf":      "a = xdg1\nb = xdg1\n",
				"xdg2/nix/nix.conf":      "b = xdg2\nc = xdg2\n",
				"home/.config/nix/x.txt": "",
			},
			env:  []string{"NIX_USER_CONF_FILES", "XDG_CONFIG_HOME=@/cfghome", "XDG_CONFIG_DIRS=@/xdg1:@/xdg2"},
			want: want{"a": "home", "b": "xdg1", "c": "xdg2"},
		},
		{
			name: "HOME/.config by default",
			files: map[string]string{
				"etc/nix.conf":              "a = etc\n",
				"home/.config/nix/nix.conf": "a = home\n",
			},
			env:  []string{"NIX_USER_CONF_FILES", "XDG_CONFIG_DIRS=@/none"},
			want: want{"a": "home"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := t.TempDir()
			files := map[string]string{}
			for k, v := range tc.files {
				files[k] = strings.ReplaceAll(v, "@", d)
			}
			writeFiles(t, d, files)
			env := isolatedEnv(d)
			for _, e := range tc.env {
				if !strings.Contains(e, "=") { // a bare name unsets it
					kept := env[:0]
					for _, kv := range env {
						if !strings.HasPrefix(kv, e+"=") {
							kept = append(kept, kv)
						}
					}
					env = kept
					continue
				}
				env = append(env, strings.ReplaceAll(e, "@", d))
			}
			c, err := LoadEnv(env)
			if err != nil {
				t.Fatal(err)
			}
			for name, w := range tc.want {
				w = strings.ReplaceAll(w, "@", d)
				got, ok := c.Get(name)
				if !ok || got != w {
					t.Errorf("%s = %q (ok=%v), want %q", name, got, ok, w)
				}
			}
			for _, name := range tc.unset {
				if v, ok := c.Get(name); ok {
					t.Errorf("%s = %q, want no value", name, v)
				}
			}
		})
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		files   map[string]string
		nixConf string // NIX_CONFIG, if non-empty
		want    []string
	}{
		{"name only", map[string]string{"etc/nix.conf": "a = 1\nfoo\n"}, "", []string{"@/etc/nix.conf:2:", "illegal configuration line 'foo'"}},
		{"no spaces around =", map[string]string{"etc/nix.conf": "foo=bar\n"}, "", []string{"@/etc/nix.conf:1:", "'foo=bar'"}},
		{"= glued to value", map[string]string{"etc/nix.conf": "\n\n\nfoo =bar # x\n"}, "", []string{"@/etc/nix.conf:4:", "'foo =bar'"}},
		{"include with two args", map[string]string{"etc/nix.conf": "include a b\n"}, "", []string{"@/etc/nix.conf:1:", "illegal"}},
		{"include alone", map[string]string{"etc/nix.conf": "include\n"}, "", []string{"@/etc/nix.conf:1:", "illegal"}},
		{"missing include", map[string]string{"etc/nix.conf": "# x\ninclude gone.conf\n"}, "", []string{"@/etc/nix.conf:2:", "file '@/etc/gone.conf' included from '@/etc/nix.conf' not found"}},
		{"error inside an included file names that file", map[string]string{"etc/nix.conf": "include sub/a.conf\n", "etc/sub/a.conf": "ok = 1\nbad line here\n"}, "", []string{"@/etc/sub/a.conf:2:", "illegal"}},
		{"bad boolean", map[string]string{"etc/nix.conf": "require-sigs = maybe\n"}, "", []string{"@/etc/nix.conf:1:", "Boolean setting 'require-sigs' has invalid value 'maybe'"}},
		{"bad integer", map[string]string{"etc/nix.conf": "connect-timeout = -1\n"}, "", []string{"@/etc/nix.conf:1:", "setting 'connect-timeout' has invalid value '-1'"}},
		{"two integers", map[string]string{"etc/nix.conf": "stalled-download-timeout = 5 6\n"}, "", []string{"@/etc/nix.conf:1:", "'5 6'"}},
		{"include cycle", map[string]string{"etc/nix.conf": "include a.conf\n", "etc/a.conf": "include nix.conf\n"}, "", []string{"nested more than"}},
		{"NIX_CONFIG line", nil, "a = 1\nb c\n", []string{"NIX_CONFIG:2:", "'b c'"}},
		{"relative include in NIX_CONFIG", nil, "include x.conf\n", []string{"NIX_CONFIG:1:", "not an absolute path"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := t.TempDir()
			writeFiles(t, d, tc.files)
			env := isolatedEnv(d)
			if tc.nixConf != "" {
				env = append(env, "NIX_CONFIG="+tc.nixConf)
			}
			_, err := LoadEnv(env)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if w = strings.ReplaceAll(w, "@", d); !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			var le *LineError
			if !errors.As(err, &le) || le.Line == 0 {
				t.Errorf("error %v is not a *LineError with a line", err)
			}
		})
	}
}

func TestAccessorsAndOverride(t *testing.T) {
	t.Parallel()
	d := t.TempDir()
	c, err := Parse(strings.NewReader(`
substituters = http://a http://b
trusted-substituters = http://t
trusted-public-keys = a:1 b:2
require-sigs = false
connect-timeout = 7
stalled-download-timeout = 9
netrc-file = /n/netrc
http-connections = 64
`), d)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", what, got, want)
		}
	}
	check("Substituters", c.Substituters(), []string{"http://a", "http://b"})
	check("TrustedSubstituters", c.TrustedSubstituters(), []string{"http://t"})
	check("TrustedPublicKeys", c.TrustedPublicKeys(), []string{"a:1", "b:2"})
	check("RequireSigs", c.RequireSigs(), false)
	check("ConnectTimeout", c.ConnectTimeout(), 7*time.Second)
	check("StalledDownloadTimeout", c.StalledDownloadTimeout(), 9*time.Second)
	check("NetrcFile", c.NetrcFile(), "/n/netrc")
	check("HTTPConnections", c.HTTPConnections(), 64)
	check("Origin", c.Origin("substituters"), "(input):2")
	check("Origin default", c.Origin("fallback"), "default")

	// Flags replace; they never append to the file's value.
	if err := c.OverrideList("substituters", []string{"http://flag"}); err != nil {
		t.Fatal(err)
	}
	check("overridden Substituters", c.Substituters(), []string{"http://flag"})
	check("Origin override", c.Origin("binary-caches"), "override")
	if err := c.Override("extra-substituters", "http://more"); err != nil {
		t.Fatal(err)
	}
	check("extra- override", c.Substituters(), []string{"http://flag", "http://more"})
	if err := c.Override("trusted-public-keys", ""); err != nil {
		t.Fatal(err)
	}
	check("emptied keys", c.TrustedPublicKeys(), []string(nil))
	if err := c.Override("require-sigs", "true"); err != nil {
		t.Fatal(err)
	}
	check("RequireSigs override", c.RequireSigs(), true)
	if err := c.Override("connect-timeout", "soon"); err == nil || !strings.Contains(err.Error(), "connect-timeout") {
		t.Errorf("bad override: err = %v", err)
	}
	check("ConnectTimeout after bad override", c.ConnectTimeout(), 7*time.Second)

	def := New("")
	check("default Substituters", def.Substituters(), []string{DefaultSubstituter})
	check("default TrustedPublicKeys", def.TrustedPublicKeys(), []string{DefaultPublicKey})
	check("default RequireSigs", def.RequireSigs(), true)
	check("default NetrcFile", def.NetrcFile(), "/etc/nix/netrc")
	check("default ConnectTimeout", def.ConnectTimeout(), time.Duration(0))
	check("default StalledDownloadTimeout", def.StalledDownloadTimeout(), 300*time.Second)
	check("default HTTPConnections", def.HTTPConnections(), 25)
	check("default TrustedSubstituters", def.TrustedSubstituters(), []string(nil))
	check("unknown List", def.List("nothing"), []string(nil))
	check("IsSet", def.IsSet("substituters"), false)
}

func TestLoadFiles(t *testing.T) {
	t.Parallel()
	d := t.TempDir()
	writeFiles(t, d, map[string]string{
		"a.conf": "substituters = http://a\nfoo = a\n",
		"b.conf": "substituters = http://b\n",
	})
	c, err := LoadFiles(d, filepath.Join(d, "a.conf"), filepath.Join(d, "missing.conf"), filepath.Join(d, "b.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Substituters(); !reflect.DeepEqual(got, []string{"http://b"}) {
		t.Errorf("Substituters = %v", got)
	}
	if got, _ := c.Get("foo"); got != "a" {
		t.Errorf("foo = %q", got)
	}
	if got := c.Files(); len(got) != 2 {
		t.Errorf("Files = %v, want the two existing files", got)
	}
	if got := c.NetrcFile(); got != filepath.Join(d, "netrc") {
		t.Errorf("NetrcFile = %q", got)
	}
}

// TestAgreesWithNix runs the real `nix show-config` on the same sources and
// compares what the two make of them.
func TestAgreesWithNix(t *testing.T) {
	testnix.Require(t)
	t.Parallel()
	d := t.TempDir()
	writeFiles(t, d, map[string]string{
		"etc/nix.conf": "substituters = http://etc\nextra-trusted-public-keys = k:1 # c\n" +
			"include sub/inc.conf\n!include nope\nrequire-sigs = no\nfoo = bar\n",
		"etc/sub/inc.conf": "connect-timeout = 3\nextra-binary-caches = http://inc\n",
		"u1.conf":          "stalled-download-timeout = 12\n",
		"u2.conf":          "stalled-download-timeout = 99\nextra-trusted-substituters = http://u2\n",
	})
	env := []string{
		"NIX_CONF_DIR=" + d + "/etc",
		"NIX_USER_CONF_FILES=" + d + "/u1.conf:" + d + "/u2.conf",
		"HOME=" + d,
		"NIX_CONFIG=extra-substituters = http://env\nnetrc-file = /some/netrc",
		"PATH=" + os.Getenv("PATH"),
	}
	c, err := LoadEnv(env)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nix", "--experimental-features", "nix-command", "show-config")
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nix show-config: %v", err)
	}
	nix := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, " = "); ok {
			nix[k] = strings.TrimSpace(v)
		}
	}
	for _, name := range []string{"substituters", "trusted-substituters", "trusted-public-keys",
		"require-sigs", "netrc-file", "connect-timeout", "stalled-download-timeout"} {
		got, _ := c.Get(name)
		if name == "require-sigs" {
			got = map[bool]string{true: "true", false: "false"}[c.RequireSigs()]
		}
		if got != nix[name] {
			t.Errorf("%s: nixconf %q, nix %q", name, got, nix[name])
		}
	}
}

// TestSSLCertFile checks ssl-cert-file's precedence, as in Nix 2.15 to
// 2.34: the setting, else NIX_SSL_CERT_FILE, else SSL_CERT_FILE, else the
// first default file that exists.
func TestSSLCertFile(t *testing.T) {
	t.Parallel()
	d := t.TempDir()
	present := filepath.Join(d, "present.crt")
	writeFiles(t, d, map[string]string{"present.crt": "x"})
	defaults := []string{filepath.Join(d, "missing.crt"), present}
	tests := []struct {
		name       string
		conf       string   // etc/nix.conf
		env        []string // extra environment
		defaults   []string
		want, from string // "@" in from is replaced by D
	}{
		{name: "first default that exists", defaults: defaults, want: present, from: "default"},
		{name: "no default exists", defaults: defaults[:1], want: "", from: "default"},
		{name: "SSL_CERT_FILE", env: []string{"SSL_CERT_FILE=/s.pem"}, defaults: defaults, want: "/s.pem", from: "SSL_CERT_FILE"},
		{name: "NIX_SSL_CERT_FILE", env: []string{"NIX_SSL_CERT_FILE=/n.pem"}, defaults: defaults, want: "/n.pem", from: "NIX_SSL_CERT_FILE"},
		{
			name: "NIX_SSL_CERT_FILE before SSL_CERT_FILE",
			env:  []string{"SSL_CERT_FILE=/s.pem", "NIX_SSL_CERT_FILE=/n.pem"}, want: "/n.pem", from: "NIX_SSL_CERT_FILE",
		},
		{
			// getEnv("NIX_SSL_CERT_FILE").value_or(...) is "": no override.
			name: "NIX_SSL_CERT_FILE set empty hides SSL_CERT_FILE",
			env:  []string{"NIX_SSL_CERT_FILE=", "SSL_CERT_FILE=/s.pem"}, defaults: defaults, want: present, from: "default",
		},
		{
			name: "nix.conf before the environment",
			conf: "ssl-cert-file = /etc/ca.pem\n", env: []string{"SSL_CERT_FILE=/s.pem", "NIX_SSL_CERT_FILE=/n.pem"},
			defaults: defaults, want: "/etc/ca.pem", from: "@/etc/nix.conf:1",
		},
		{
			name: "nix.conf naming a missing file still wins",
			conf: "ssl-cert-file = /nonexistent.pem\n", defaults: defaults, want: "/nonexistent.pem", from: "@/etc/nix.conf:1",
		},
		{name: "explicitly empty", conf: "ssl-cert-file =\n", env: []string{"SSL_CERT_FILE=/s.pem"}, defaults: defaults, want: "", from: "@/etc/nix.conf:1"},
		{
			name: "NIX_CONFIG after nix.conf",
			conf: "ssl-cert-file = /etc/ca.pem\n", env: []string{"NIX_CONFIG=ssl-cert-file = /c.pem"}, want: "/c.pem", from: "NIX_CONFIG:1",
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(d, strconv.Itoa(i))
			writeFiles(t, dir, map[string]string{"etc/nix.conf": tt.conf})
			c, err := LoadEnv(append(isolatedEnv(dir), tt.env...))
			if err != nil {
				t.Fatal(err)
			}
			c.sslDefaults = tt.defaults
			file, from := c.SSLCertFile()
			if want := strings.ReplaceAll(tt.from, "@", dir); file != tt.want || from != want {
				t.Errorf("SSLCertFile() = %q, %q; want %q, %q", file, from, tt.want, want)
			}
			if tt.conf == "" && c.IsSet("ssl-cert-file") {
				t.Errorf("IsSet without a setting")
			}
			if err := c.Override("ssl-cert-file", "/o.pem"); err != nil {
				t.Fatal(err)
			}
			if file, from := c.SSLCertFile(); file != "/o.pem" || from != "override" {
				t.Errorf("after Override: %q, %q", file, from)
			}
		})
	}
}
