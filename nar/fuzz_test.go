package nar

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzReader checks that the Reader never panics, never reports a size
// other than what it consumed, and accepts only canonical NARs: whatever
// it accepts, the Writer reproduces byte for byte.
func FuzzReader(f *testing.F) {
	f.Add(validTree())
	f.Add(archive(reg("hello")))
	f.Add(archive(dir()))
	f.Add(archive(toks("(", "type", "symlink", "target", "/nix/store/x", ")")))
	f.Add(archive(dir(entry("a", reg("")), entry("a", dir()))))
	f.Add(archive(dir(entry("b", reg("")), entry("a", reg("")))))
	f.Add(archive(dir(entry("..", reg("")))))
	f.Add(archive(dir(entry("", reg("")))))
	f.Add(archive(toks("(", "type", "regular", "foo", "", "contents", "", ")")))
	f.Add(cat(archive(reg("x")), toks("y")))
	f.Add(archive(dir(entry(strings.Repeat("n", 256), reg("")))))
	f.Add(validTree()[:100])
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := Validate(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error is not a format error: %v", err)
			}
			if n > int64(len(data)) {
				t.Fatalf("consumed %d of %d bytes", n, len(data))
			}
			return
		}
		if n != int64(len(data)) {
			t.Fatalf("accepted after %d of %d bytes", n, len(data))
		}
		again, err := rewrite(data)
		if err != nil {
			t.Fatalf("accepted by Validate but not by rewrite: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("accepted a non-canonical NAR:\n in  %q\n out %q", data, again)
		}
		var out bytes.Buffer
		if m, err := Copy(&out, bytes.NewReader(data)); err != nil || m != n || !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("Copy = %d, %v", m, err)
		}
	})
}
