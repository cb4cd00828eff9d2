package binarycache

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/semaphore"
)

// The closure index lets a node plan the download of a root's whole
// closure with one request instead of one round of narinfo requests per
// level of the closure.
//
// # Name
//
// It lives next to the root's narinfo: <hashpart>.closure, where hashpart
// is the 32-character hash part of the root's store path. Nix ignores the
// file; caches without it still work (Plan falls back to fetching
// narinfos level by level).
//
// # Format, version 1
//
// UTF-8 text, lines ending in "\n". A header, a blank line, then one record
// per path of the closure, each record followed by a blank line:
//
//	NixAuroraClosureIndex: 1
//	Root: /nix/store/<hash>-<name>
//	Count: <number of records>
//
//	<the narinfo of the root, exactly as served at <hash>.narinfo>
//
//	<the narinfo of another path of the closure>
//
//	…
//
// The first line names the format and its version; a reader refuses other
// versions. Other header lines are "Key: value"; unknown keys are ignored.
// Each record is a narinfo in the usual format (no blank lines inside),
// with its own signatures. The first record is the root; the writer puts
// the others in store path order. The index is not signed as a whole: each
// record is checked exactly as if its narinfo had been fetched on its own
// (it parses, has the required fields, and carries a signature by a trusted
// key; the record for a path is the narinfo of that path), and the set must
// be exactly the closure: no duplicate paths, every reference of every
// record has a record, every record is reachable from the root, and there
// are Count records. A single failing record rejects the whole index.
//
// The format streams: a reader can check each record as it arrives.
const (
	ClosureIndexSuffix  = ".closure"
	ClosureIndexMagic   = "NixAuroraClosureIndex"
	ClosureIndexVersion = 1
	// MaxClosureIndexSize bounds the bytes read of an index, and
	// MaxClosureIndexPaths its Count. With ClosureIndexMemory they keep
	// nix-init within its 32 MiB whatever a cache sends: an index
	// that passes a bound is ignored, and the closure planned by narinfos.
	MaxClosureIndexSize  = 4 << 20
	MaxClosureIndexPaths = 1 << 15
	// ClosureIndexMemory bounds the memory the records of one index may
	// take while it is read (before the closure can be checked), as
	// estimated by recordMemory. Indexes are read one at a time (see
	// Cache.ClosureIndex), so this is also the bound for all of them.
	// A closure of about 2000 paths of 1 KiB narinfos fits; larger
	// closures are planned by narinfos.
	ClosureIndexMemory = 4 << 20
)

// recordMemory estimates what a parsed record keeps: its text (the
// fields are substrings of it), the NarInfo, a string header per reference
// and signature, and its entry in the reader's set of paths.
func recordMemory(text int, ni *NarInfo) int64 {
	return int64(text) + 320 + 16*int64(len(ni.References)+len(ni.Sigs))
}

// ClosureIndexName returns the file name of a root's closure index.
func ClosureIndexName(root string) string { return HashPart(root) + ClosureIndexSuffix }

// WriteClosureIndex writes the closure index of root. infos must be
// exactly root's closure (each path once); they are checked as a reader
// would, except for signatures.
func WriteClosureIndex(w io.Writer, root string, infos []*NarInfo) error {
	if err := checkClosure(root, infos); err != nil {
		return err
	}
	sorted := slices.Clone(infos)
	slices.SortFunc(sorted, func(a, b *NarInfo) int {
		switch {
		case a.StorePath == root:
			return -1
		case b.StorePath == root:
			return 1
		}
		return strings.Compare(a.StorePath, b.StorePath)
	})
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "%s: %d\nRoot: %s\nCount: %d\n\n", ClosureIndexMagic, ClosureIndexVersion, root, len(sorted))
	for _, ni := range sorted {
		bw.WriteString(ni.String())
		bw.WriteString("\n")
	}
	return bw.Flush()
}

// ReadClosureIndex reads and checks the closure index of root (see the
// format above): every record must parse, be signed by one of keys, and the
// records must be exactly root's closure. It returns the narinfos, the
// root's first. Failures wrap ErrBadClosureIndex, and also ErrUntrusted or
// ErrBadSignature when a record's signature is the problem.
//
// It streams: r is read record by record, each checked as it arrives, so
// a bad index fails at its first bad record. It reads at most
// MaxClosureIndexSize bytes and keeps parsed records within
// ClosureIndexMemory (and the text of one record besides).
func ReadClosureIndex(r io.Reader, root string, keys []PublicKey) ([]*NarInfo, error) {
	br := bufio.NewReaderSize(io.LimitReader(r, MaxClosureIndexSize+1), 64<<10)
	var read int64
	lineNo := 0
	readLine := func() (string, bool, error) {
		var line []byte
		for {
			chunk, err := br.ReadSlice('\n')
			line = append(line, chunk...)
			read += int64(len(chunk))
			if read > MaxClosureIndexSize {
				return "", false, fmt.Errorf("larger than %d bytes", MaxClosureIndexSize)
			}
			if len(line) > MaxNarInfoSize {
				return "", false, fmt.Errorf("line %d is too long", lineNo+1)
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err == io.EOF {
				if len(line) > 0 {
					return "", false, fmt.Errorf("line %d does not end with a newline", lineNo+1)
				}
				return "", false, nil
			}
			if err != nil {
				return "", false, err
			}
			lineNo++
			return string(line[:len(line)-1]), true, nil
		}
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w for %s: %s", ErrBadClosureIndex, root, fmt.Sprintf(format, args...))
	}
	// Header.
	first, ok, err := readLine()
	if err != nil || !ok {
		return nil, bad("empty or unreadable: %v", err)
	}
	magic, ver, _ := strings.Cut(first, ": ")
	if magic != ClosureIndexMagic {
		return nil, bad("not a closure index (first line %q)", clip(first))
	}
	if ver != strconv.Itoa(ClosureIndexVersion) {
		return nil, bad("unsupported version %q (this reader knows %d)", clip(ver), ClosureIndexVersion)
	}
	count := -1
	var gotRoot string
	for {
		line, ok, err := readLine()
		if err != nil || !ok {
			return nil, bad("truncated header: %v", err)
		}
		if line == "" {
			break
		}
		k, v, found := strings.Cut(line, ": ")
		if !found {
			return nil, bad("header line %d: %q is not \"Key: value\"", lineNo, clip(line))
		}
		switch k {
		case "Root":
			gotRoot = v
		case "Count":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxClosureIndexPaths {
				return nil, bad("bad Count %q", clip(v))
			}
			count = n
		}
	}
	if gotRoot != root {
		return nil, bad("it is for %q", clip(gotRoot))
	}
	if count < 0 {
		return nil, bad("no Count")
	}
	// Records.
	var infos []*NarInfo
	seen := map[string]bool{}
	var rec bytes.Buffer
	var kept int64
	for {
		line, ok, err := readLine()
		if err != nil {
			return nil, bad("%v", err)
		}
		if ok && line != "" {
			rec.WriteString(line)
			rec.WriteByte('\n')
			if rec.Len() > MaxNarInfoSize {
				return nil, bad("record %d is larger than %d bytes", len(infos)+1, MaxNarInfoSize)
			}
			continue
		}
		if rec.Len() == 0 {
			if !ok {
				break
			}
			return nil, bad("empty record at line %d", lineNo)
		}
		if !ok {
			return nil, bad("the last record does not end with a blank line (truncated?)")
		}
		if len(infos) >= count {
			return nil, bad("more than the %d records of its Count", count)
		}
		ni, err := ParseNarInfo(rec.Bytes())
		if err != nil {
			return nil, bad("record %d: %v", len(infos)+1, err)
		}
		if kept += recordMemory(rec.Len(), ni); kept > ClosureIndexMemory {
			return nil, bad("its first %d records take more than the %d bytes of memory an index may take", len(infos)+1, ClosureIndexMemory)
		}
		rec.Reset()
		if len(infos) == 0 && ni.StorePath != root {
			return nil, bad("the first record is %s, not the root", ni.StorePath)
		}
		if seen[ni.StorePath] {
			return nil, bad("%s appears twice", ni.StorePath)
		}
		seen[ni.StorePath] = true
		if err := Verify(ni, keys); err != nil {
			return nil, fmt.Errorf("%w for %s: record for %s: %w", ErrBadClosureIndex, root, ni.StorePath, err)
		}
		infos = append(infos, ni)
	}
	if len(infos) != count {
		return nil, bad("%d records, but its Count says %d (truncated?)", len(infos), count)
	}
	if err := checkClosure(root, infos); err != nil {
		return nil, err
	}
	return infos, nil
}

// checkClosure checks that infos are exactly root's closure.
func checkClosure(root string, infos []*NarInfo) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w for %s: %s", ErrBadClosureIndex, root, fmt.Sprintf(format, args...))
	}
	byPath := make(map[string]*NarInfo, len(infos))
	for _, ni := range infos {
		if _, dup := byPath[ni.StorePath]; dup {
			return bad("%s appears twice", ni.StorePath)
		}
		byPath[ni.StorePath] = ni
	}
	if byPath[root] == nil {
		return bad("the root has no record")
	}
	reached := map[string]bool{root: true}
	queue := []string{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, ref := range byPath[p].ReferencePaths() {
			if byPath[ref] == nil {
				return bad("not closed: %s references %s, which has no record", p, ref)
			}
			if !reached[ref] {
				reached[ref] = true
				queue = append(queue, ref)
			}
		}
	}
	if len(reached) != len(infos) {
		for _, ni := range infos {
			if !reached[ni.StorePath] {
				return bad("%s is not in the closure of the root", ni.StorePath)
			}
		}
	}
	return nil
}

// indexReading lets one closure index be read at a time in the process:
// the records of an index are held until its closure checks out, and
// reading several at once would multiply that by the number of roots.
// Their requests still go out in parallel (Plan, and Open's prefetch):
// the bodies wait unread.
var indexReading = semaphore.NewWeighted(1)

// ClosureIndex fetches and checks root's closure index from this cache
// (see ReadClosureIndex). A cache without one fails with ErrNotFound. The
// read is bounded in bytes (an announced Content-Length or file size over
// MaxClosureIndexSize fails before any is read), in memory, and in time
// (the stall timeout for the whole index: it is only an optimisation, and
// while it is read no other index is).
func (c *Cache) ClosureIndex(ctx context.Context, root string) ([]*NarInfo, error) {
	hash := HashPart(root)
	if hash == "" {
		return nil, &Error{Op: "fetch closure index", Path: root, Cache: c.url, Err: errors.New("not a store path")}
	}
	name := hash + ClosureIndexSuffix
	fail := func(err error) ([]*NarInfo, error) {
		return nil, &Error{Op: "fetch closure index", Path: hash, Cache: c.url, Err: err}
	}
	body, err, ok := c.take(ctx, name)
	if !ok {
		body, err = c.openFile(ctx, name)
	}
	if err != nil {
		return fail(err)
	}
	defer body.Close()
	lr, err := limitBody(body, name, MaxClosureIndexSize)
	if err != nil {
		return fail(fmt.Errorf("%w for %s: %w", ErrBadClosureIndex, root, err))
	}
	if err := indexReading.Acquire(ctx, 1); err != nil {
		return fail(err)
	}
	defer indexReading.Release(1)
	// Closing the body ends a read in progress.
	deadline := time.AfterFunc(c.opts.StallTimeout, func() { body.Close() })
	defer deadline.Stop()
	infos, err := ReadClosureIndex(lr, root, c.opts.TrustedKeys)
	if err != nil {
		if !deadline.Stop() {
			err = fmt.Errorf("%w for %s: not read within %v: %w", ErrBadClosureIndex, root, c.opts.StallTimeout, err)
		}
		return fail(err)
	}
	return infos, nil
}
