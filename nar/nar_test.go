package nar

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nix-aurora/nix-aurora/internal/testnix"
)

// toks builds a NAR (or a broken one) from its strings, each framed as
// the format wants: u64 length, bytes, zero padding.
func toks(ss ...string) []byte {
	var b bytes.Buffer
	for _, s := range ss {
		writeTok(&b, s)
	}
	return b.Bytes()
}

func writeTok(b *bytes.Buffer, s string) {
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
	b.Write(n[:])
	b.WriteString(s)
	b.Write(make([]byte, (8-len(s)%8)%8))
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// entry wraps the tokens of a node into a directory entry.
func entry(name string, node []byte) []byte {
	return cat(toks("entry", "(", "name", name, "node"), node, toks(")"))
}

func reg(contents string) []byte {
	return toks("(", "type", "regular", "contents", contents, ")")
}

func dir(entries ...[]byte) []byte {
	return cat(toks("(", "type", "directory"), cat(entries...), toks(")"))
}

func archive(node []byte) []byte { return cat(toks(Magic), node) }

type entryData struct {
	Header
	Contents string
}

func readAll(t testing.TB, data []byte) ([]entryData, error) {
	t.Helper()
	nr := NewReader(bytes.NewReader(data))
	var out []entryData
	for {
		h, err := nr.Next()
		if err == io.EOF {
			if nr.Offset() != int64(len(data)) {
				t.Fatalf("Offset = %d at EOF, want %d", nr.Offset(), len(data))
			}
			return out, nil
		}
		if err != nil {
			return out, err
		}
		b, err := io.ReadAll(nr)
		if err != nil {
			return out, err
		}
		out = append(out, entryData{*h, string(b)})
	}
}

func validTree() []byte {
	return archive(dir(
		entry(")", reg("paren")), // a legal name that go-nix's reader mishandles
		entry("a", toks("(", "type", "regular", "executable", "", "contents", "#!/bin/sh\n", ")")),
		entry("b", dir(
			entry("c", toks("(", "type", "symlink", "target", "../a", ")")),
			entry("d", dir()),
		)),
		entry("e", reg("")),
		entry("f", reg("12345678")),
	))
}

func TestReadValid(t *testing.T) {
	got, err := readAll(t, validTree())
	if err != nil {
		t.Fatal(err)
	}
	want := []entryData{
		{Header{Path: "/", Type: TypeDirectory}, ""},
		{Header{Path: "/)", Type: TypeRegular, Size: 5}, "paren"},
		{Header{Path: "/a", Type: TypeRegular, Executable: true, Size: 10}, "#!/bin/sh\n"},
		{Header{Path: "/b", Type: TypeDirectory}, ""},
		{Header{Path: "/b/c", Type: TypeSymlink, LinkTarget: "../a"}, ""},
		{Header{Path: "/b/d", Type: TypeDirectory}, ""},
		{Header{Path: "/e", Type: TypeRegular}, ""},
		{Header{Path: "/f", Type: TypeRegular, Size: 8}, "12345678"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, root := range [][]byte{
		archive(reg("x")),
		archive(toks("(", "type", "symlink", "target", "/nix/store/x", ")")),
		archive(dir()),
	} {
		if n, err := Validate(bytes.NewReader(root)); err != nil || n != int64(len(root)) {
			t.Errorf("Validate = %d, %v; want %d, nil", n, err, len(root))
		}
	}
}

func TestSkipUnreadContents(t *testing.T) {
	data := validTree()
	nr := NewReader(bytes.NewReader(data))
	if n := countEntries(t, nr); n != 8 {
		t.Errorf("%d entries, want 8", n)
	}
	if _, err := nr.Next(); err != io.EOF {
		t.Errorf("Next after EOF = %v", err)
	}
}

func TestReject(t *testing.T) {
	big := func(n uint64) []byte {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], n)
		return b[:]
	}
	deep := reg("x")
	for i := 0; i <= MaxDepth+1; i++ {
		deep = dir(entry("d", deep))
	}
	valid := validTree()
	badPad := append([]byte(nil), archive(reg("abc"))...)
	badPad[len(badPad)-17] = 1 // a padding byte of "abc"
	badNamePad := archive(dir(entry("n", reg(""))))
	i := bytes.Index(badNamePad, []byte("n\x00"))
	badNamePad[i+3] = 'x'
	cases := []struct {
		name, data, want string
	}{
		{"bad magic", string(cat(toks("nix-archive-2"), reg(""))), "bad magic"},
		{"empty input", "", "truncated"},
		{"empty name", string(archive(dir(entry("", reg(""))))), "empty entry name"},
		{"dot", string(archive(dir(entry(".", reg(""))))), `entry name "."`},
		{"dotdot", string(archive(dir(entry("..", reg(""))))), `entry name ".."`},
		{"slash", string(archive(dir(entry("a/b", reg(""))))), "contains '/'"},
		{"nul", string(archive(dir(entry("a\x00b", reg(""))))), "NUL"},
		{"duplicate", string(archive(dir(entry("a", reg("")), entry("a", dir())))), `duplicate entry name "a"`},
		{"duplicate nested", string(archive(dir(entry("x", dir(entry("a", toks("(", "type", "symlink", "target", "/", ")")), entry("a", dir())))))), `NAR entry "/x"`},
		{"unsorted", string(archive(dir(entry("b", reg("")), entry("a", reg(""))))), "increasing byte order"},
		{"unsorted case", string(archive(dir(entry("a", reg("")), entry("B", reg(""))))), "increasing byte order"},
		{"unknown field in regular", string(archive(toks("(", "type", "regular", "foo", "", "contents", "", ")"))), `unexpected "foo"`},
		{"unknown field in directory", string(archive(cat(toks("(", "type", "directory", "foo", "bar"), toks(")")))), `unexpected "foo"`},
		{"unknown field in entry", string(archive(cat(toks("(", "type", "directory", "entry", "(", "nom", "a")))), `expected "name"`},
		{"unknown type", string(archive(toks("(", "type", "fifo", ")"))), `unknown node type "fifo"`},
		{"executable not empty", string(archive(toks("(", "type", "regular", "executable", "1", "contents", "", ")"))), `expected ""`},
		{"executable twice", string(archive(toks("(", "type", "regular", "executable", "", "executable", "", "contents", "", ")"))), `unexpected "executable"`},
		{"extra field after contents", string(archive(toks("(", "type", "regular", "contents", "", "contents", "", ")"))), `expected ")"`},
		{"symlink extra", string(archive(toks("(", "type", "symlink", "target", "a", "target", "b", ")"))), `expected ")"`},
		{"empty target", string(archive(toks("(", "type", "symlink", "target", "", ")"))), "empty symlink target"},
		{"nul target", string(archive(toks("(", "type", "symlink", "target", "a\x00", ")"))), "NUL"},
		{"trailing zeros", string(cat(archive(reg("x")), make([]byte, 8))), "trailing data"},
		{"trailing string", string(cat(valid, toks("x"))), "trailing data"},
		{"trailing byte", string(cat(archive(dir()), []byte{0})), "trailing data"},
		{"second root", string(cat(archive(reg("")), reg(""))), "trailing data"},
		{"bad padding contents", string(badPad), "non-zero padding"},
		{"bad padding name", string(badNamePad), "non-zero padding"},
		{"name too long", string(archive(dir(entry(strings.Repeat("n", 256), reg(""))))), "longer than 255"},
		{"target too long", string(archive(toks("(", "type", "symlink", "target", strings.Repeat("t", 4096), ")"))), "longer than 4095"},
		{"huge token", string(cat(toks(Magic), big(1<<62))), `expected "("`},
		{"huge name", string(cat(toks(Magic, "(", "type", "directory", "entry", "(", "name"), big(1<<62))), "entry name of"},
		{"huge file", string(cat(toks(Magic, "(", "type", "regular", "contents"), big(1<<63))), "too large"},
		{"file shorter than size", string(cat(toks(Magic, "(", "type", "regular", "contents"), big(100), []byte("abc"))), "truncated"},
		{"too deep", string(archive(deep)), "nested deeper"},
		{"root close missing", string(cat(toks(Magic, "(", "type", "directory"))), "truncated"},
		{"entry close missing", string(cat(toks(Magic, "(", "type", "directory", "entry", "(", "name", "a", "node"), reg(""), toks(")"))), "truncated"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := readAll(t, []byte(c.data))
			if err == nil {
				t.Fatalf("accepted")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v, not ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want it to mention %q", err, c.want)
			}
			if _, err2 := Validate(strings.NewReader(c.data)); err2 == nil {
				t.Errorf("Validate accepted it")
			}
		})
	}
}

func TestErrorNamesEntry(t *testing.T) {
	data := archive(dir(entry("bin", dir(entry("a", reg("")), entry("a", reg(""))))))
	_, err := Validate(bytes.NewReader(data))
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Path != "/bin" || fe.Offset == 0 {
		t.Fatalf("err = %#v", err)
	}
	if !strings.Contains(err.Error(), `"/bin"`) {
		t.Errorf("message %q does not name /bin", err)
	}
}

func TestTruncatedEverywhere(t *testing.T) {
	data := validTree()
	for n := 0; n < len(data); n++ {
		_, err := Validate(bytes.NewReader(data[:n]))
		if !errors.Is(err, io.ErrUnexpectedEOF) || !errors.Is(err, ErrInvalid) {
			t.Fatalf("prefix of %d bytes: err = %v", n, err)
		}
	}
}

type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

// An error of the underlying reader at the very end (a hash check, say)
// must fail the NAR even though the NAR itself is complete.
func TestUnderlyingErrorAtEOF(t *testing.T) {
	sentinel := errors.New("hash mismatch")
	_, err := Validate(&failingReader{data: validTree(), err: sentinel})
	if !errors.Is(err, sentinel) {
		t.Fatalf("err = %v, want the reader's error", err)
	}
	if errors.Is(err, ErrInvalid) {
		t.Errorf("a reader's error is not a format error: %v", err)
	}
}

func TestCopy(t *testing.T) {
	data := validTree()
	var out bytes.Buffer
	n, err := Copy(&out, bytes.NewReader(data))
	if err != nil || n != int64(len(data)) || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("Copy = %d, %v (copied %d of %d bytes)", n, err, out.Len(), len(data))
	}
}

// rewrite reads a NAR and writes it again with the Writer.
func rewrite(data []byte) ([]byte, error) {
	var out bytes.Buffer
	nw := NewWriter(&out)
	nr := NewReader(bytes.NewReader(data))
	for {
		h, err := nr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if err := nw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := io.Copy(nw, nr); err != nil {
			return nil, err
		}
	}
	if err := nw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func TestRoundTrip(t *testing.T) {
	for _, data := range [][]byte{validTree(), archive(reg("hello")), archive(dir())} {
		got, err := rewrite(data)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("round trip differs:\n got %q\nwant %q", got, data)
		}
	}
}

func TestWriterRefuses(t *testing.T) {
	try := func(hs ...*Header) error {
		nw := NewWriter(io.Discard)
		for _, h := range hs {
			if err := nw.WriteHeader(h); err != nil {
				return err
			}
		}
		return nw.Close()
	}
	d := func(p string) *Header { return &Header{Path: p, Type: TypeDirectory} }
	r := func(p string) *Header { return &Header{Path: p, Type: TypeRegular} }
	for name, hs := range map[string][]*Header{
		"no root":         {},
		"root not first":  {r("/a")},
		"unsorted":        {d("/"), r("/b"), r("/a")},
		"duplicate":       {d("/"), r("/a"), r("/a")},
		"bad name":        {d("/"), r("/.")},
		"not in dir":      {d("/"), r("/a/b")},
		"after closed":    {d("/"), d("/a"), r("/b"), r("/a/c")},
		"second root":     {r("/"), r("/")},
		"bad symlink":     {{Path: "/", Type: TypeSymlink}},
		"missing content": {d("/"), {Path: "/a", Type: TypeRegular, Size: 3}, r("/b")},
		"unclean path":    {d("/"), r("/a/")},
	} {
		if err := try(hs...); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	nw := NewWriter(io.Discard)
	nw.WriteHeader(&Header{Path: "/", Type: TypeRegular, Size: 2})
	if _, err := nw.Write([]byte("abc")); err == nil {
		t.Errorf("Write beyond Size accepted")
	}
}

func makeTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	write := func(rel, data string, mode os.FileMode) {
		p := filepath.Join(root, rel)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, []byte(data), mode))
		must(os.Chmod(p, mode))
	}
	write("a", "a", 0o644)
	write("B", "upper", 0o644)
	write("a.b", "", 0o644)
	write("a-", strings.Repeat("x", 7), 0o600)
	write("exec", "#!/bin/sh\necho hi\n", 0o755)
	write("group-exec-only", "no", 0o654) // not executable for Nix: only the owner bit counts
	write("sub/deeper/file", strings.Repeat("0123456789", 10007), 0o444)
	write("sub/eight", "12345678", 0o644)
	write("with space", "s", 0o644)
	write("é", "utf-8", 0o644)
	must(os.MkdirAll(filepath.Join(root, "empty"), 0o755))
	must(os.Symlink("/nix/store/does-not-exist", filepath.Join(root, "abs-link")))
	must(os.Symlink("../a", filepath.Join(root, "sub", "rel-link")))
	must(os.Symlink("sub", filepath.Join(root, "dir-link")))
	return root
}

func TestDumpPathMatchesNix(t *testing.T) {
	testnix.Require(t)
	root := makeTree(t)
	for _, p := range []string{root, filepath.Join(root, "exec"), filepath.Join(root, "abs-link"), filepath.Join(root, "empty")} {
		want, err := exec.Command("nix-store", "--dump", p).Output()
		if err != nil {
			t.Fatalf("nix-store --dump %s: %v", p, err)
		}
		var got bytes.Buffer
		if err := DumpPath(&got, p); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("DumpPath(%s) differs from nix-store --dump (%d vs %d bytes)", p, got.Len(), len(want))
		}
		if n, err := Validate(bytes.NewReader(want)); err != nil || n != int64(len(want)) {
			t.Fatalf("Validate(nix-store --dump %s) = %d, %v", p, n, err)
		}
		again, err := rewrite(want)
		if err != nil || !bytes.Equal(again, want) {
			t.Fatalf("rewrite of nix-store --dump %s: %v", p, err)
		}
	}
}

func TestDumpPathRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := exec.Command("mkfifo", fifo).Run(); err != nil {
		t.Skip("mkfifo:", err)
	}
	if err := DumpPath(io.Discard, dir); err == nil || !strings.Contains(err.Error(), "unsupported file type") {
		t.Errorf("err = %v", err)
	}
}

// TestReset: a Reader reused after an error, or after a NAR, reads the
// next NAR from its start, with none of the previous one's state.
func TestReset(t *testing.T) {
	data := validTree()
	nr := NewReader(bytes.NewReader(data[:len(data)/2]))
	for {
		if _, err := nr.Next(); err != nil {
			if err == io.EOF {
				t.Fatal("a truncated NAR read to its end")
			}
			break
		}
	}
	for range 2 {
		nr.Reset(bytes.NewReader(data))
		if n := countEntries(t, nr); n != 8 || nr.Offset() != int64(len(data)) {
			t.Errorf("after Reset: %d entries, %d bytes; want 8, %d", n, nr.Offset(), len(data))
		}
	}
}

// countEntries reads nr to its end and returns how many entries it had.
func countEntries(t *testing.T, nr *Reader) int {
	t.Helper()
	n := 0
	for {
		_, err := nr.Next()
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
}
