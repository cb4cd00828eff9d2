package binarycache

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// uploadedCache is a cache written by our Uploader with the closures of
// the fixture's two roots (App and Other, which share Dep), so it has a
// closure index for each.
func uploadedCache(t *testing.T) (*fixture, string) {
	t.Helper()
	f := getFixture(t)
	dir := t.TempDir()
	up, err := NewUploader(ctxT(t), "file://"+dir, f.SecretKey, UploadOptions{Options: fastOpts()})
	if err != nil {
		t.Fatal(err)
	}
	res, err := up.Upload(ctxT(t), spawnStore(t), []string{f.App, f.Other})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Indexes) != 2 {
		t.Fatalf("indexes written: %q", res.Indexes)
	}
	return f, dir
}

// closureSet is the union of the closures of paths, from the host store.
func closureSet(t *testing.T, paths ...string) []string {
	t.Helper()
	out := runNix(t, nixEnv(t), "nix-store", append([]string{"-qR"}, paths...)...)
	s := strings.Fields(out)
	slices.Sort(s)
	return slices.Compact(s)
}

func planPaths(p *Plan) []string {
	var out []string
	for _, pp := range p.Paths {
		out = append(out, pp.Path)
	}
	return out
}

// checkPlan checks what every plan promises: each path once, references
// before the paths that refer to them, every reference either planned or
// valid, every narinfo verified under keys, for its path, and equal to the
// narinfo the cache directory dir serves for it.
func checkPlan(t *testing.T, p *Plan, dir string, valid map[string]bool, keys ...PublicKey) {
	t.Helper()
	pos := map[string]int{}
	for i, pp := range p.Paths {
		if _, dup := pos[pp.Path]; dup {
			t.Errorf("%s is planned twice", pp.Path)
		}
		pos[pp.Path] = i
	}
	var download, nar uint64
	for i, pp := range p.Paths {
		if pp.Info == nil || pp.Cache == nil {
			t.Fatalf("%s: no narinfo or cache", pp.Path)
		}
		if err := pp.Info.CheckPath(pp.Path); err != nil {
			t.Error(err)
		}
		if err := Verify(pp.Info, keys); err != nil {
			t.Errorf("%s: planned narinfo does not verify: %v", pp.Path, err)
		}
		for _, ref := range pp.Info.ReferencePaths() {
			if ref == pp.Path {
				continue
			}
			j, ok := pos[ref]
			switch {
			case ok && j > i:
				t.Errorf("%s comes before its reference %s", pp.Path, ref)
			case !ok && !valid[ref]:
				t.Errorf("%s: reference %s is neither planned nor valid", pp.Path, ref)
			}
		}
		if valid[pp.Path] {
			t.Errorf("%s is valid but planned", pp.Path)
		}
		if dir != "" {
			b, err := os.ReadFile(narinfoFile(dir, pp.Path))
			if err != nil {
				t.Fatal(err)
			}
			want, err := ParseNarInfo(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(pp.Info, want) {
				t.Errorf("%s: planned narinfo\n%s\ndiffers from the cache's\n%s", pp.Path, pp.Info, want)
			}
		}
		download += pp.Info.FileSize
		nar += pp.Info.NarSize
	}
	if p.DownloadSize != download || p.NarSize != nar {
		t.Errorf("sizes %d/%d, want %d/%d", p.DownloadSize, p.NarSize, download, nar)
	}
}

// ---- a cache served with latency, timing every request ----

type span struct{ start, end time.Time }

type timedServer struct {
	*httptest.Server
	dir   string
	delay time.Duration // before answering a narinfo or closure index

	mu    sync.Mutex
	spans map[string][]span // by URL path
	order []string          // "METHOD /path" as they arrived
}

func newTimedServer(t *testing.T, dir string, delay time.Duration) *timedServer {
	s := &timedServer{dir: dir, delay: delay, spans: map[string][]span{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Server = &httptest.Server{Listener: ln, Config: &http.Server{Handler: s}}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func (s *timedServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	s.mu.Lock()
	s.order = append(s.order, r.Method+" "+r.URL.Path)
	s.mu.Unlock()
	if strings.HasSuffix(r.URL.Path, ".narinfo") || strings.HasSuffix(r.URL.Path, ClosureIndexSuffix) {
		select {
		case <-time.After(s.delay):
		case <-r.Context().Done():
			return
		}
	}
	// The end is taken before answering, so that it precedes anything the
	// client does with the answer.
	s.mu.Lock()
	s.spans[r.URL.Path] = append(s.spans[r.URL.Path], span{start, time.Now()})
	s.mu.Unlock()
	file := filepath.Join(s.dir, filepath.FromSlash(strings.TrimPrefix(r.URL.Path, "/")))
	if fi, err := os.Stat(file); err != nil || fi.IsDir() || strings.Contains(r.URL.Path, "..") {
		http.NotFound(w, r)
		return
	}
	http.ServeFile(w, r, file)
}

func (s *timedServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.order)
}

func (s *timedServer) reset() {
	s.mu.Lock()
	s.spans = map[string][]span{}
	s.order = nil
	s.mu.Unlock()
}

// narinfoSpan is the one request for p's narinfo.
func (s *timedServer) narinfoSpan(t *testing.T, p string) span {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := s.spans["/"+HashPart(p)+".narinfo"]
	if len(sp) != 1 {
		t.Fatalf("%d requests for the narinfo of %s, want 1", len(sp), p)
	}
	return sp[0]
}

// checkLevels checks that the narinfo requests of each level overlapped in
// time (all of a level started before any of it ended), and that each level
// started after the one before it had ended.
func (s *timedServer) checkLevels(t *testing.T, levels ...[]string) {
	t.Helper()
	var prevEnd time.Time
	for i, level := range levels {
		var firstEnd, lastStart, lastEnd time.Time
		for j, p := range level {
			sp := s.narinfoSpan(t, p)
			if j == 0 || sp.end.Before(firstEnd) {
				firstEnd = sp.end
			}
			if sp.start.After(lastStart) {
				lastStart = sp.start
			}
			if sp.end.After(lastEnd) {
				lastEnd = sp.end
			}
			if i > 0 && sp.start.Before(prevEnd) {
				t.Errorf("level %d: %s was asked for before level %d was done", i+1, p, i)
			}
		}
		if len(level) > 1 && !lastStart.Before(firstEnd) {
			t.Errorf("level %d %q: the requests did not overlap (one ended at %v, the last started at %v)",
				i+1, level, firstEnd.Format(time.StampMicro), lastStart.Format(time.StampMicro))
		}
		prevEnd = lastEnd
	}
}

func hashRequests(paths []string, suffix string) []string {
	var out []string
	for _, p := range paths {
		out = append(out, "GET /"+HashPart(p)+suffix)
	}
	slices.Sort(out)
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// Plan over a cache our Uploader wrote: one request (the closure index)
// per root, and the union of the closures, each path once, in topological
// order, every narinfo verified.
func TestPlanFromClosureIndex(t *testing.T) {
	f, dir := uploadedCache(t)
	srv := newServer(t, dir)
	c, err := Open(ctxT(t), srv.URL, fastOpts(f.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	roots := []string{f.Other, f.App, f.App} // duplicates and order do not matter
	srv.resetLog()
	plan, err := Caches{c}.Plan(ctxT(t), roots, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sorted(srv.requests()), hashRequests([]string{f.App, f.Other}, ClosureIndexSuffix); !slices.Equal(got, want) {
		t.Errorf("requests %q\nwant %q", got, want)
	}
	if want := sorted([]string{f.App, f.Other}); !slices.Equal(plan.IndexedRoots, want) {
		t.Errorf("IndexedRoots %q, want %q", plan.IndexedRoots, want)
	}
	if got, want := sorted(planPaths(plan)), closureSet(t, f.App, f.Other); !slices.Equal(got, want) {
		t.Errorf("planned %q\nwant %q", got, want)
	}
	checkPlan(t, plan, dir, nil, f.PublicKey)
	for _, pp := range plan.Paths {
		if pp.Cache != c {
			t.Errorf("%s planned from %v", pp.Path, pp.Cache)
		}
	}

	// Valid paths are left out, still with one request per root; a valid
	// root costs none.
	var asked [][]string
	isValid := func(paths []string) ([]string, error) {
		asked = append(asked, slices.Clone(paths))
		var v []string
		for _, p := range paths {
			if p == f.Dep || p == f.Other {
				v = append(v, p)
			}
		}
		return v, nil
	}
	srv.resetLog()
	plan, err = Caches{c}.Plan(ctxT(t), roots, isValid)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sorted(srv.requests()), hashRequests([]string{f.App}, ClosureIndexSuffix); !slices.Equal(got, want) {
		t.Errorf("requests %q, want %q", got, want)
	}
	if got, want := sorted(planPaths(plan)), sorted([]string{f.App, f.Lib, f.Tool}); !slices.Equal(got, want) {
		t.Errorf("planned %q, want %q", got, want)
	}
	checkPlan(t, plan, dir, map[string]bool{f.Dep: true, f.Other: true}, f.PublicKey)
	if len(asked) != 2 {
		t.Errorf("isValid was called %d times (%q), want 2: the roots, then the indexed closure", len(asked), asked)
	}

	// Without a trusted key the index is no use, and neither are the
	// narinfos.
	c2, _ := Open(ctxT(t), srv.URL, fastOpts(genKey(t, "nxa-test-1").PublicKey()))
	if _, err := (Caches{c2}).Plan(ctxT(t), []string{f.App}, nil); !errors.Is(err, ErrUntrusted) {
		t.Errorf("Plan with the wrong key: %v", err)
	}
}

// indexFile is a closure index split into its header and records.
type indexFile struct {
	header  []string
	records []string // each a narinfo's text, without the blank line
}

func readIndex(t *testing.T, file string) *indexFile {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(strings.TrimSuffix(string(b), "\n\n"), "\n\n")
	return &indexFile{header: strings.Split(parts[0], "\n"), records: parts[1:]}
}

func (x *indexFile) String() string {
	var b strings.Builder
	b.WriteString(strings.Join(x.header, "\n") + "\n\n")
	for _, r := range x.records {
		b.WriteString(r + "\n\n")
	}
	return b.String()
}

func (x *indexFile) setHeader(key, value string) {
	for i, h := range x.header {
		if strings.HasPrefix(h, key+": ") {
			x.header[i] = key + ": " + value
		}
	}
}

func (x *indexFile) find(t *testing.T, p string) int {
	t.Helper()
	for i, r := range x.records {
		if strings.HasPrefix(r, "StorePath: "+p+"\n") {
			return i
		}
	}
	t.Fatalf("no record for %s", p)
	return -1
}

// editRecord rewrites the record of p with edit (parsed, changed, printed).
func (x *indexFile) editRecord(t *testing.T, p string, edit func(ni *NarInfo)) {
	t.Helper()
	i := x.find(t, p)
	ni, err := ParseNarInfo([]byte(x.records[i]))
	if err != nil {
		t.Fatal(err)
	}
	edit(ni)
	x.records[i] = strings.TrimSuffix(ni.String(), "\n")
}

// A tampered index is rejected as a whole; Plan then discovers the
// closure narinfo by narinfo, and fails only if those fail too.
func TestPlanTamperedIndex(t *testing.T) {
	f, clean := uploadedCache(t)
	indexName := ClosureIndexName(f.App)
	otherRecord := readIndex(t, filepath.Join(clean, ClosureIndexName(f.Other))).records[0]
	foreign := genKey(t, "nxa-test-1") // the trusted key's name, another key

	cases := []struct {
		name   string
		tamper func(x *indexFile)
		want   []error // what ReadClosureIndex fails with
		msg    string
	}{
		{"changed NarHash", func(x *indexFile) {
			dep := x.records[x.find(t, f.Dep)]
			x.editRecord(t, f.Lib, func(ni *NarInfo) { // keeps Lib's own signature
				ni.NarHash = lineValue(dep, "NarHash")
			})
		}, []error{ErrBadClosureIndex, ErrUntrusted}, f.Lib},
		{"changed NarSize", func(x *indexFile) {
			x.editRecord(t, f.Dep, func(ni *NarInfo) { ni.NarSize++ })
		}, []error{ErrBadClosureIndex, ErrUntrusted}, f.Dep},
		{"malformed signature", func(x *indexFile) {
			x.editRecord(t, f.Tool, func(ni *NarInfo) { ni.Sigs = []string{"nxa-test-1:AAAA"} })
		}, []error{ErrBadClosureIndex, ErrBadSignature}, f.Tool},
		{"signature by another key of the same name", func(x *indexFile) {
			x.editRecord(t, f.Tool, func(ni *NarInfo) { ni.Sigs = nil; Sign(ni, foreign) })
		}, []error{ErrBadClosureIndex, ErrUntrusted}, f.Tool},
		{"unsigned record", func(x *indexFile) {
			x.editRecord(t, f.App, func(ni *NarInfo) { ni.Sigs = nil })
		}, []error{ErrBadClosureIndex, ErrUntrusted}, f.App},
		{"missing reference", func(x *indexFile) {
			i := x.find(t, f.Dep)
			x.records = slices.Delete(x.records, i, i+1)
			x.setHeader("Count", strconv.Itoa(len(x.records)))
		}, []error{ErrBadClosureIndex}, "which has no record"},
		{"reference dropped from a record", func(x *indexFile) {
			// Re-signing is impossible without the key: the signature breaks.
			x.editRecord(t, f.Tool, func(ni *NarInfo) { ni.References = nil })
		}, []error{ErrBadClosureIndex, ErrUntrusted}, f.Tool},
		{"wrong Root", func(x *indexFile) { x.setHeader("Root", f.Other) }, []error{ErrBadClosureIndex}, "it is for"},
		{"root record not first", func(x *indexFile) {
			x.records[0], x.records[1] = x.records[1], x.records[0]
		}, []error{ErrBadClosureIndex}, "not the root"},
		{"record outside the closure", func(x *indexFile) {
			x.records = append(x.records, otherRecord)
			x.setHeader("Count", strconv.Itoa(len(x.records)))
		}, []error{ErrBadClosureIndex}, "not in the closure"},
		{"duplicate record", func(x *indexFile) {
			x.records = append(x.records, x.records[1])
			x.setHeader("Count", strconv.Itoa(len(x.records)))
		}, []error{ErrBadClosureIndex}, "appears twice"},
		{"truncated", func(x *indexFile) { x.records = x.records[:len(x.records)-1] }, []error{ErrBadClosureIndex}, "Count"},
		{"Count too small", func(x *indexFile) { x.setHeader("Count", "2") }, []error{ErrBadClosureIndex}, "Count"},
		{"future version", func(x *indexFile) { x.header[0] = ClosureIndexMagic + ": 2" }, []error{ErrBadClosureIndex}, "version"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, clean)
			x := readIndex(t, filepath.Join(dir, indexName))
			tc.tamper(x)
			if err := os.WriteFile(filepath.Join(dir, indexName), []byte(x.String()), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := ReadClosureIndex(strings.NewReader(x.String()), f.App, []PublicKey{f.PublicKey})
			for _, want := range tc.want {
				if !errors.Is(err, want) {
					t.Errorf("ReadClosureIndex: %v, want %v", err, want)
				}
			}
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("ReadClosureIndex: %v, want a message with %q", err, tc.msg)
			}

			// Plan notes the bad index and falls back to the narinfos.
			srv := newServer(t, dir)
			var mu sync.Mutex
			var notes []string
			opts := fastOpts(f.PublicKey)
			opts.Logf = func(format string, args ...any) {
				mu.Lock()
				notes = append(notes, fmt.Sprintf(format, args...))
				mu.Unlock()
			}
			c, err := Open(ctxT(t), srv.URL, opts)
			if err != nil {
				t.Fatal(err)
			}
			srv.resetLog()
			plan, err := Caches{c}.Plan(ctxT(t), []string{f.App}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(plan.IndexedRoots) != 0 {
				t.Errorf("IndexedRoots %q: the tampered index was used", plan.IndexedRoots)
			}
			if got, want := sorted(planPaths(plan)), sorted(f.Closure); !slices.Equal(got, want) {
				t.Errorf("planned %q, want %q", got, want)
			}
			checkPlan(t, plan, dir, nil, f.PublicKey)
			want := append(hashRequests([]string{f.App}, ClosureIndexSuffix), hashRequests(f.Closure, ".narinfo")...)
			slices.Sort(want)
			if got := sorted(srv.requests()); !slices.Equal(got, want) {
				t.Errorf("requests %q\nwant %q", got, want)
			}
			if len(notes) != 1 || !strings.Contains(notes[0], "ignoring the closure index") || !strings.Contains(notes[0], HashPart(f.App)) {
				t.Errorf("notes %q", notes)
			}
		})
	}

	// When the narinfos are as bad as the index, Plan fails, naming the
	// path and why.
	t.Run("narinfo tampered too", func(t *testing.T) {
		dir := copyDir(t, clean)
		x := readIndex(t, filepath.Join(dir, indexName))
		x.editRecord(t, f.Dep, func(ni *NarInfo) { ni.NarSize++ })
		os.WriteFile(filepath.Join(dir, indexName), []byte(x.String()), 0o644)
		rewriteNarInfo(t, dir, f.Dep, func(ni *NarInfo) { ni.NarSize++ })
		c, _ := Open(ctxT(t), "file://"+dir, fastOpts(f.PublicKey))
		_, err := Caches{c}.Plan(ctxT(t), []string{f.App}, nil)
		if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), f.Dep) || !strings.Contains(err.Error(), "a reference of") {
			t.Errorf("Plan: %v", err)
		}
	})
	t.Run("narinfo missing", func(t *testing.T) {
		dir := copyDir(t, clean)
		x := readIndex(t, filepath.Join(dir, indexName))
		x.setHeader("Root", f.Other)
		os.WriteFile(filepath.Join(dir, indexName), []byte(x.String()), 0o644)
		os.Remove(narinfoFile(dir, f.Tool))
		c, _ := Open(ctxT(t), "file://"+dir, fastOpts(f.PublicKey))
		_, err := Caches{c}.Plan(ctxT(t), []string{f.App}, nil)
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), f.Tool) {
			t.Errorf("Plan: %v", err)
		}
	})
}

func lineValue(record, key string) string {
	for _, l := range strings.Split(record, "\n") {
		if v, ok := strings.CutPrefix(l, key+": "); ok {
			return v
		}
	}
	return ""
}

// Plan over a cache made by `nix copy` (no closure index): breadth first,
// every level's narinfos requested at once, nothing below a valid path
// looked at, shared paths once.
func TestPlanBreadthFirst(t *testing.T) {
	f := getFixture(t)
	dir := f.Caches["zstd"]
	const delay = 150 * time.Millisecond
	srv := newTimedServer(t, dir, delay)
	c, err := Open(ctxT(t), srv.URL, fastOpts(f.PublicKey))
	if err != nil {
		t.Fatal(err)
	}

	// app -> {lib, tool} -> dep: three levels.
	srv.reset()
	plan, err := Caches{c}.Plan(ctxT(t), []string{f.App}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sorted(planPaths(plan)), sorted(f.Closure); !slices.Equal(got, want) {
		t.Errorf("planned %q, want %q", got, want)
	}
	if len(plan.IndexedRoots) != 0 {
		t.Errorf("IndexedRoots %q", plan.IndexedRoots)
	}
	checkPlan(t, plan, dir, nil, f.PublicKey)
	srv.checkLevels(t, []string{f.App}, []string{f.Lib, f.Tool}, []string{f.Dep})
	want := append(hashRequests([]string{f.App}, ClosureIndexSuffix), hashRequests(f.Closure, ".narinfo")...)
	slices.Sort(want)
	if got := sorted(srv.requests()); !slices.Equal(got, want) {
		t.Errorf("requests %q\nwant %q", got, want)
	}

	// Two roots: {app, other} -> {lib, tool, dep}; dep, shared, once.
	srv.reset()
	plan, err = Caches{c}.Plan(ctxT(t), []string{f.App, f.Other}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sorted(planPaths(plan)), closureSet(t, f.App, f.Other); !slices.Equal(got, want) {
		t.Errorf("planned %q, want %q", got, want)
	}
	checkPlan(t, plan, dir, nil, f.PublicKey)
	srv.checkLevels(t, []string{f.App, f.Other}, []string{f.Lib, f.Tool, f.Dep})

	// Below a valid path nothing is asked for: with lib valid, dep is
	// still reached through tool; with lib and tool valid, only app is
	// fetched. isValid gets one batch per level.
	for _, tc := range []struct {
		valid   []string
		fetched []string
		batches int
	}{
		{[]string{f.Lib}, []string{f.App, f.Tool, f.Dep}, 3},
		{[]string{f.Lib, f.Tool}, []string{f.App}, 2},
		{[]string{f.App}, nil, 1},
	} {
		valid := map[string]bool{}
		for _, v := range tc.valid {
			valid[v] = true
		}
		var batches [][]string
		isValid := func(paths []string) ([]string, error) {
			batches = append(batches, slices.Clone(paths))
			var v []string
			for _, p := range paths {
				if valid[p] {
					v = append(v, p)
				}
			}
			return v, nil
		}
		srv.reset()
		plan, err := Caches{c}.Plan(ctxT(t), []string{f.App}, isValid)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := sorted(planPaths(plan)), sorted(tc.fetched); !slices.Equal(got, want) {
			t.Errorf("valid %q: planned %q, want %q", tc.valid, got, want)
		}
		checkPlan(t, plan, dir, valid, f.PublicKey)
		var want []string
		if len(tc.fetched) > 0 {
			want = append(hashRequests([]string{f.App}, ClosureIndexSuffix), hashRequests(tc.fetched, ".narinfo")...)
			slices.Sort(want)
		}
		if got := sorted(srv.requests()); !slices.Equal(got, want) {
			t.Errorf("valid %q: requests %q\nwant %q", tc.valid, got, want)
		}
		if len(batches) != tc.batches {
			t.Errorf("valid %q: isValid called with %q, want %d batches", tc.valid, batches, tc.batches)
		}
	}

	// The store's answer failing fails the plan.
	_, err = Caches{c}.Plan(ctxT(t), []string{f.App}, func([]string) ([]string, error) { return nil, errors.New("daemon gone") })
	if err == nil || !strings.Contains(err.Error(), "daemon gone") {
		t.Errorf("Plan with a failing isValid: %v", err)
	}
}

// A root with an index and a root without one, in one plan: the indexed
// closure costs one request, the other is discovered; what they share is
// planned once and not fetched again.
func TestPlanMixed(t *testing.T) {
	f, dir := uploadedCache(t)
	os.Remove(filepath.Join(dir, ClosureIndexName(f.Other)))
	srv := newServer(t, dir)
	c, err := Open(ctxT(t), srv.URL, fastOpts(f.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	srv.resetLog()
	plan, err := Caches{c}.Plan(ctxT(t), []string{f.App, f.Other}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(plan.IndexedRoots, []string{f.App}) {
		t.Errorf("IndexedRoots %q", plan.IndexedRoots)
	}
	want := append(hashRequests([]string{f.App, f.Other}, ClosureIndexSuffix), hashRequests([]string{f.Other}, ".narinfo")...)
	slices.Sort(want)
	if got := sorted(srv.requests()); !slices.Equal(got, want) {
		t.Errorf("requests %q\nwant %q", got, want)
	}
	if got, want := sorted(planPaths(plan)), closureSet(t, f.App, f.Other); !slices.Equal(got, want) {
		t.Errorf("planned %q, want %q", got, want)
	}
	checkPlan(t, plan, dir, nil, f.PublicKey)
}

// WriteClosureIndex refuses what is not exactly a closure, and what it
// writes reads back equal.
func TestWriteClosureIndex(t *testing.T) {
	k := genKey(t, "idx-1")
	infos := syntheticClosure(t, k, 4)
	root := infos[0].StorePath
	var b strings.Builder
	if err := WriteClosureIndex(&b, root, infos); err != nil {
		t.Fatal(err)
	}
	got, err := ReadClosureIndex(strings.NewReader(b.String()), root, []PublicKey{k.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, infos) {
		t.Errorf("read back %v, want %v", got, infos)
	}
	if err := WriteClosureIndex(&b, root, infos[:len(infos)-1]); !errors.Is(err, ErrBadClosureIndex) {
		t.Errorf("an open set: %v", err)
	}
	if err := WriteClosureIndex(&b, root, append(slices.Clone(infos), infos[1])); !errors.Is(err, ErrBadClosureIndex) {
		t.Errorf("a duplicate: %v", err)
	}
	if err := WriteClosureIndex(&b, infos[1].StorePath, infos); !errors.Is(err, ErrBadClosureIndex) {
		t.Errorf("paths outside the closure: %v", err)
	}
}

// syntheticClosure makes n signed narinfos forming a chain root -> 1 -> …,
// each also referring to itself and to the last one, the root's first
// and the others in store path order (as WriteClosureIndex writes them).
func syntheticClosure(t testing.TB, k SecretKey, n int) []*NarInfo {
	t.Helper()
	var paths []string
	for i := range n {
		h := fmt.Sprintf("%032d", i)
		h = strings.NewReplacer("0", "a", "1", "b", "2", "c", "3", "d", "4", "f", "5", "g", "6", "h", "7", "i", "8", "j", "9", "k").Replace(h)
		paths = append(paths, StoreDir+"/"+h+"-p"+strconv.Itoa(i))
	}
	var infos []*NarInfo
	for i, p := range paths {
		refs := []string{strings.TrimPrefix(p, StoreDir+"/"), strings.TrimPrefix(paths[n-1], StoreDir+"/")}
		if i+1 < n {
			refs = append(refs, strings.TrimPrefix(paths[i+1], StoreDir+"/"))
		}
		sum := make([]byte, 32)
		sum[0] = byte(i)
		ni := &NarInfo{
			StorePath: p, URL: "nar/" + nix32(sum) + ".nar.zst", Compression: "zstd",
			FileHash: "sha256:" + nix32(sum), FileSize: uint64(100 + i),
			NarHash: "sha256:" + nix32(sum), NarSize: uint64(200 + i),
			References: sortedUnique(refs),
		}
		if err := Sign(ni, k); err != nil {
			t.Fatal(err)
		}
		infos = append(infos, ni)
	}
	slices.SortFunc(infos[1:], func(a, b *NarInfo) int { return strings.Compare(a.StorePath, b.StorePath) })
	return infos
}

// TestOpenPrefetchesClosureIndexes: with Options.ClosureIndexes, Open asks
// for the roots' closure indexes while it waits for nix-cache-info, and
// Plan uses what arrived: two requests at once, none after Open. A root
// without an index costs its one request all the same, and planning falls
// back as without prefetching.
func TestOpenPrefetchesClosureIndexes(t *testing.T) {
	f, dir := uploadedCache(t)
	srv := newServer(t, dir)
	srv.mu.Lock()
	srv.bodyDelay = func(string) time.Duration { return 50 * time.Millisecond }
	srv.mu.Unlock()
	opts := fastOpts(f.PublicKey)
	opts.ClosureIndexes = []string{f.App}
	c, err := Open(ctxT(t), srv.URL, opts)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Caches{c}.Plan(ctxT(t), []string{f.App}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := sorted(append(hashRequests([]string{f.App}, ClosureIndexSuffix), "GET /nix-cache-info"))
	if got := sorted(srv.requests()); !slices.Equal(got, want) {
		t.Errorf("requests %q\nwant %q", got, want)
	}
	srv.mu.Lock()
	overlapped := srv.maxInflight >= 2
	srv.mu.Unlock()
	if !overlapped {
		t.Error("the closure index was not asked for while nix-cache-info was")
	}
	if got, want := sorted(planPaths(plan)), closureSet(t, f.App); !slices.Equal(got, want) {
		t.Errorf("planned %q\nwant %q", got, want)
	}

	// A cache without indexes: the prefetch finds nothing, and the plan
	// goes level by level as it would have.
	if err := os.Remove(filepath.Join(dir, ClosureIndexName(f.App))); err != nil {
		t.Fatal(err)
	}
	srv.resetLog()
	c, err = Open(ctxT(t), srv.URL, opts)
	if err != nil {
		t.Fatal(err)
	}
	plan, err = Caches{c}.Plan(ctxT(t), []string{f.App}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := srv.count(ClosureIndexSuffix); n != 1 {
		t.Errorf("%d closure index requests, want 1", n)
	}
	if got, want := sorted(planPaths(plan)), closureSet(t, f.App); !slices.Equal(got, want) {
		t.Errorf("planned without the index %q\nwant %q", got, want)
	}
}
