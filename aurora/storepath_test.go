package aurora

import (
	"reflect"
	"testing"
)

func TestStorePaths(t *testing.T) {
	const (
		h1 = "1a2b3c4d5f6g7h8i9j0k1l2m3n4p5q6r"
		h2 = "0c4gd8x5ixyp8qkmlg4djvf8ihlnvbl0"
	)
	for _, tc := range []struct {
		cmdline string
		want    []string
	}{
		{"", nil},
		{"echo hello", nil},
		{"/nix/store/" + h1 + "-nginx-1.24.0/bin/nginx -c /nix/store/" + h2 + "-nginx.conf",
			[]string{"/nix/store/" + h1 + "-nginx-1.24.0", "/nix/store/" + h2 + "-nginx.conf"}},
		{"/nix/store/" + h1 + "-a /nix/store/" + h2 + "-b /nix/store/" + h1 + "-a/bin/x",
			[]string{"/nix/store/" + h1 + "-a", "/nix/store/" + h2 + "-b"}},
		{"PATH=/nix/store/" + h1 + "-coreutils-9.1/bin:$PATH; exec \"/nix/store/" + h2 + "-app+x._?=y\"",
			[]string{"/nix/store/" + h1 + "-coreutils-9.1", "/nix/store/" + h2 + "-app+x._?=y"}},
		{"'/nix/store/" + h1 + "-q'", []string{"/nix/store/" + h1 + "-q"}},
		// Not store paths: a letter outside Nix's base 32 (e, o, t, u), a
		// short hash, no name, no dash.
		{"/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x", nil},
		{"/nix/store/" + h1[:31] + "-x", nil},
		{"/nix/store/" + h1 + "-", nil},
		{"/nix/store/" + h1 + "x", nil},
		{"/nix/store/" + h1, nil},
	} {
		if got := StorePaths(tc.cmdline); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("StorePaths(%q) = %q, want %q", tc.cmdline, got, tc.want)
		}
	}
}
