// Command capture records what a nix-daemon sends while it substitutes from
// a misbehaving binary cache (see ../README.md and capture.sh).
//
//	capture -serve -mode MODE -dir CACHE        serve CACHE on 127.0.0.1, misbehaving; prints its address
//	capture -socket SOCK -path P [-mode MODE]   QueryMissing, then BuildPaths, as JSON lines on stdout
//	capture -socket SOCK -path P -mode addnar -dir CACHE   AddToStoreNar of CACHE's NAR of P instead
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/nix-aurora/nix-aurora/store"
)

func main() {
	mode := flag.String("mode", "", "how the cache misbehaves (see serve)")
	serve := flag.Bool("serve", false, "serve the cache")
	dir := flag.String("dir", "", "the binary cache directory (uncompressed NARs)")
	socket := flag.String("socket", "", "the daemon's socket")
	path := flag.String("path", "", "the store path to substitute")
	flag.Parse()
	if *serve {
		if err := serveCache(*mode, *dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if err := record(*mode, *dir, *socket, *path); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func record(mode, dir, socket, path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := store.Open(ctx, "unix://"+socket)
	if err != nil {
		return err
	}
	defer c.Close()
	out := json.NewEncoder(os.Stdout)
	out.Encode(map[string]any{"daemon": c.DaemonVersion(), "protocol": fmt.Sprintf("%#x", c.Protocol())})
	transfers := map[uint64]bool{}
	c.SetLogger(func(ev store.Event) {
		// A transfer's progress is one result per curl callback: noise here.
		if ev.Kind == store.StartActivity && ev.ActivityType == store.ActFileTransfer {
			transfers[ev.ActivityID] = true
		}
		if ev.Kind == store.Result && ev.ResultType == store.ResProgress && transfers[ev.ActivityID] {
			return
		}
		m := map[string]any{"kind": ev.Kind.String()}
		switch ev.Kind {
		case store.Log:
			m["text"] = ev.Text
		case store.StartActivity:
			m["id"], m["level"], m["type"], m["text"], m["fields"], m["parent"] = ev.ActivityID, ev.Level, ev.ActivityType, ev.Text, ev.Fields, ev.Parent
		case store.StopActivity:
			m["id"] = ev.ActivityID
		case store.Result:
			m["id"], m["result"], m["fields"] = ev.ActivityID, ev.ResultType, ev.Fields
		}
		out.Encode(m)
	})
	if mode == "addnar" {
		info, nar, err := readCache(dir, path)
		if err != nil {
			return err
		}
		return out.Encode(frame("AddToStoreNar", c.AddToStoreNar(ctx, info, bytes.NewReader(nar), false, false)))
	}
	mi, err := c.QueryMissing(ctx, []string{path})
	if err != nil {
		return out.Encode(frame("QueryMissing", err))
	}
	out.Encode(map[string]any{"op": "QueryMissing", "unknown": len(mi.Unknown), "willSubstitute": len(mi.WillSubstitute)})
	if len(mi.Unknown) > 0 || mode == "warmup" {
		return nil
	}
	return out.Encode(frame("BuildPaths", c.BuildPaths(ctx, []string{path}, store.BuildNormal)))
}

// frame is how an operation ended: the daemon's error frame, if any.
func frame(op string, err error) map[string]any {
	m := map[string]any{"op": op}
	var de *store.DaemonError
	if errors.As(err, &de) {
		m["error"] = map[string]any{"message": de.Message, "traces": de.Traces, "level": de.Level, "status": de.Status}
	} else if err != nil {
		m["other"] = err.Error()
	}
	return m
}

// readCache reads the narinfo and the (uncompressed) NAR of path in dir.
func readCache(dir, path string) (store.PathInfo, []byte, error) {
	hash, _, _ := strings.Cut(strings.TrimPrefix(path, "/nix/store/"), "-")
	ni, err := os.ReadFile(filepath.Join(dir, hash+".narinfo"))
	if err != nil {
		return store.PathInfo{}, nil, err
	}
	field := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + name + `: (.*)$`).FindStringSubmatch(string(ni))
		if m == nil {
			return ""
		}
		return m[1]
	}
	nar, err := os.ReadFile(filepath.Join(dir, field("URL")))
	if err != nil {
		return store.PathInfo{}, nil, err
	}
	return store.PathInfo{Path: path, NarHash: field("NarHash"), NarSize: uint64(len(nar)), Sigs: []string{field("Sig")}}, nar, nil
}

// serveCache serves dir on 127.0.0.1, misbehaving as mode says: reset
// (NAR connections reset), resetall (every connection but nix-cache-info's
// reset), stall (a NAR's headers, then nothing), 503 (NARs), 503all
// (narinfos and NARs), 404 (narinfos), 404nar (NARs), hash (a NAR with one
// byte changed); anything else serves dir as it is.
func serveCache(mode, dir string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	files := http.FileServer(http.Dir(dir))
	return http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nar := strings.HasPrefix(r.URL.Path, "/nar/")
		narinfo := strings.HasSuffix(r.URL.Path, ".narinfo")
		switch {
		case mode == "reset" && nar, mode == "resetall" && r.URL.Path != "/nix-cache-info":
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.(*net.TCPConn).SetLinger(0) // RST, not FIN
				conn.Close()
			}
		case mode == "stall" && nar:
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		case mode == "503" && nar, mode == "503all" && (nar || narinfo):
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
		case mode == "404" && narinfo, mode == "404nar" && nar:
			http.NotFound(w, r)
		case mode == "hash" && nar:
			b, err := os.ReadFile(filepath.Join(dir, filepath.Clean(r.URL.Path)))
			if err != nil || len(b) == 0 {
				http.NotFound(w, r)
				return
			}
			// The first byte of the first file's contents: after the
			// padded "contents" string comes the contents' length.
			i := bytes.Index(b, []byte("contents"))
			if i < 0 || i+16 >= len(b) {
				http.NotFound(w, r)
				return
			}
			b[i+16] ^= 1
			w.Write(b)
		default:
			files.ServeHTTP(w, r)
		}
	}))
}
