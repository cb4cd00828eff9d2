package binarycache

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// progressLog records an Uploader's Progress calls.
type progressLog struct {
	mu      sync.Mutex
	actions map[string][]string // action -> paths
}

func (l *progressLog) record(path, action string, ni *NarInfo) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ni == nil || ni.StorePath != path {
		action = "bad narinfo for " + action
	}
	if l.actions == nil {
		l.actions = map[string][]string{}
	}
	l.actions[action] = append(l.actions[action], path)
}

func (l *progressLog) take() map[string][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.actions
	for _, paths := range a {
		slices.Sort(paths)
	}
	l.actions = nil
	return a
}

// Unsigned uploads, Progress, and what a second upload does: nothing when
// all is there (the closure index included), our signature added when a
// path is there unsigned by us.
func TestUploaderUnsignedProgressAndRepeat(t *testing.T) {
	f := getFixture(t)
	ctx := ctxT(t)
	src := spawnStore(t)
	dir := t.TempDir()
	closure := sorted(f.Closure)

	if _, err := NewUploader(ctx, "file://"+dir, f.SecretKey, UploadOptions{Unsigned: true}); err == nil {
		t.Error("an unsigned uploader took a key")
	}
	if _, err := NewUploader(ctx, "file://"+dir, SecretKey{}, UploadOptions{}); err == nil {
		t.Error("a signing uploader took no key")
	}

	var log progressLog
	up, err := NewUploader(ctx, "file://"+dir, SecretKey{}, UploadOptions{Options: fastOpts(), Unsigned: true, Progress: log.record})
	if err != nil {
		t.Fatal(err)
	}
	res, err := up.Upload(ctx, src, []string{f.App})
	if err != nil {
		t.Fatal(err)
	}
	if got := log.take(); len(got) != 1 || !slices.Equal(got["uploaded"], closure) {
		t.Errorf("progress %q, want every path uploaded", got)
	}
	if !slices.Equal(res.Uploaded, closure) || len(res.Indexes) != 1 {
		t.Errorf("result %+v", res)
	}
	for _, p := range f.Closure {
		b, err := os.ReadFile(narinfoFile(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "\nSig: ") {
			t.Errorf("unsigned upload signed %s:\n%s", p, b)
		}
	}

	// Again, unsigned: everything is there.
	res, err = up.Upload(ctx, src, []string{f.App})
	if err != nil {
		t.Fatal(err)
	}
	if got := log.take(); len(got) != 1 || !slices.Equal(got["skipped"], closure) {
		t.Errorf("progress %q, want every path skipped", got)
	}
	if len(res.Uploaded)+len(res.Signed) != 0 || len(res.Indexes) != 0 || len(res.UnchangedIndexes) != 1 {
		t.Errorf("repeat: result %+v", res)
	}

	// Signed over the unsigned cache: the NARs stay, the narinfos get our
	// signature, and the index (whose records changed) is rewritten.
	nars, _ := filepath.Glob(filepath.Join(dir, "nar", "*"))
	up, err = NewUploader(ctx, "file://"+dir, f.SecretKey, UploadOptions{Options: fastOpts(), Progress: log.record})
	if err != nil {
		t.Fatal(err)
	}
	res, err = up.Upload(ctx, src, []string{f.App})
	if err != nil {
		t.Fatal(err)
	}
	if got := log.take(); len(got) != 1 || !slices.Equal(got["signed"], closure) {
		t.Errorf("progress %q, want every path signed", got)
	}
	if !slices.Equal(res.Signed, closure) || len(res.Indexes) != 1 || res.FileBytes != 0 {
		t.Errorf("signing: result %+v", res)
	}
	if after, _ := filepath.Glob(filepath.Join(dir, "nar", "*")); !slices.Equal(after, nars) {
		t.Errorf("NARs changed: %q -> %q", nars, after)
	}
	c, err := Open(ctx, "file://"+dir, fastOpts(f.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	infos, err := c.ClosureIndex(ctx, f.App)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != len(closure) {
		t.Errorf("index has %d records, want %d", len(infos), len(closure))
	}
	for _, p := range f.Closure {
		if _, err := c.NarInfo(ctx, p); err != nil {
			t.Error(err)
		}
	}

	// A path the store does not have fails, naming it and the cache.
	missing := StoreDir + "/00000000000000000000000000000000-missing"
	_, err = up.Upload(ctx, src, []string{missing})
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "file://"+dir) {
		t.Errorf("missing path: %v", err)
	}
}

// A narinfo whose NAR is gone, or not as long as its FileSize says, is not
// kept (skipped, or signed) but uploaded afresh, over HTTP (checked with a
// one-byte Range request) and file://, signed or not; a node then
// substitutes it.
func TestUploaderReplacesWhatItCannotKeep(t *testing.T) {
	f := getFixture(t)
	ctx := ctxT(t)
	src := spawnStore(t)
	narOf := func(dir, p string) string {
		b, err := os.ReadFile(narinfoFile(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		ni, err := ParseNarInfo(b)
		if err != nil {
			t.Fatal(err)
		}
		return filepath.Join(dir, filepath.FromSlash(ni.URL))
	}
	spoil := func(dir string) {
		os.Remove(narOf(dir, f.Dep))
		if err := os.Truncate(narOf(dir, f.Lib), 10); err != nil {
			t.Fatal(err)
		}
	}
	spoiled := sorted([]string{f.Dep, f.Lib})

	httpDir := t.TempDir()
	srv := newServer(t, httpDir)
	srv.allowPut = true
	fileDir := t.TempDir()
	for _, c := range []struct {
		url, dir string
		key      SecretKey
	}{{srv.URL, httpDir, f.SecretKey}, {"file://" + fileDir, fileDir, SecretKey{}}} {
		var log progressLog
		up, err := NewUploader(ctx, c.url, c.key, UploadOptions{Options: fastOpts(), Unsigned: c.key.Name == "", Progress: log.record})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := up.Upload(ctx, src, []string{f.App}); err != nil {
			t.Fatal(err)
		}
		log.take()
		spoil(c.dir)
		res, err := up.Upload(ctx, src, []string{f.App})
		if err != nil {
			t.Fatal(err)
		}
		got := log.take()
		if !slices.Equal(got["re-uploaded"], spoiled) || len(got["skipped"]) != len(f.Closure)-2 || len(got) != 2 {
			t.Errorf("%s: progress %q, want %q re-uploaded, the rest skipped", c.url, got, spoiled)
		}
		if !slices.Equal(res.Replaced, spoiled) || !slices.Equal(res.Uploaded, spoiled) {
			t.Errorf("%s: result %+v", c.url, res)
		}
	}
	substituteWithNix(t, srv.URL, f)
}
