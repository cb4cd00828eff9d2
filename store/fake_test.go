package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// wb builds wire bytes by hand, independently of the package's encoder, so
// that the tests check the encoding against the protocol's layouts.
type wb []byte

func (b wb) u64(v uint64) wb { return binary.LittleEndian.AppendUint64(b, v) }

func (b wb) bool(v bool) wb {
	if v {
		return b.u64(1)
	}
	return b.u64(0)
}

func (b wb) str(s string) wb {
	b = b.u64(uint64(len(s)))
	b = append(b, s...)
	for len(b)%8 != 0 {
		b = append(b, 0)
	}
	return b
}

func (b wb) strs(ss ...string) wb {
	b = b.u64(uint64(len(ss)))
	for _, s := range ss {
		b = b.str(s)
	}
	return b
}

func (b wb) raw(p []byte) wb { return append(b, p...) }

// last is the STDERR_LAST that ends a log stream.
func (b wb) last() wb { return b.u64(stderrLast) }

// peer is the daemon side of a net.Pipe, scripted byte for byte.
type peer struct {
	t    *testing.T
	conn net.Conn
}

const peerTimeout = 5 * time.Second

// expect reads exactly len(want) bytes and compares them.
func (p *peer) expect(what string, want []byte) bool {
	p.t.Helper()
	got := make([]byte, len(want))
	p.conn.SetReadDeadline(time.Now().Add(peerTimeout))
	if _, err := io.ReadFull(p.conn, got); err != nil {
		p.t.Errorf("peer: reading %s: %v (got %x)", what, err, got)
		return false
	}
	if !bytes.Equal(got, want) {
		p.t.Errorf("peer: %s:\n got  %x\n want %x", what, got, want)
		return false
	}
	return true
}

func (p *peer) send(b []byte) {
	p.t.Helper()
	p.conn.SetWriteDeadline(time.Now().Add(peerTimeout))
	if _, err := p.conn.Write(b); err != nil {
		p.t.Errorf("peer: writing: %v", err)
	}
}

// expectSilence checks that the client sends nothing for a while.
func (p *peer) expectSilence(d time.Duration) {
	p.t.Helper()
	var b [1]byte
	p.conn.SetReadDeadline(time.Now().Add(d))
	n, err := p.conn.Read(b[:])
	if n > 0 {
		p.t.Errorf("peer: client sent %x, want nothing", b[:n])
	} else if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, io.EOF) {
		p.t.Errorf("peer: waiting for silence: %v", err)
	}
}

// handshake plays the daemon's side of the handshake at protocol version v.
func (p *peer) handshake(v int, nixVersion string, trust uint64) {
	p.t.Helper()
	if !p.expect("magic", wb(nil).u64(workerMagic1)) {
		return
	}
	p.send(wb(nil).u64(workerMagic2).u64(uint64(v)))
	if !p.expect("client version, affinity, reserveSpace", wb(nil).u64(clientVersion).u64(0).u64(0)) {
		return
	}
	var out wb
	neg := min(v, clientVersion)
	if neg >= 0x121 {
		out = out.str(nixVersion)
	}
	if neg >= 0x123 {
		out = out.u64(trust)
	}
	p.send(out.last())
}

// fake connects a Conn to a scripted daemon speaking protocol v. The script
// runs after the handshake; the test waits for it at cleanup.
func fake(t *testing.T, v int, script func(p *peer)) *Conn {
	t.Helper()
	return fakeTrust(t, v, 0, script)
}

func fakeTrust(t *testing.T, v int, trust uint64, script func(p *peer)) *Conn {
	t.Helper()
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer server.Close()
		p := &peer{t: t, conn: server}
		p.handshake(v, "2.8.0", trust)
		if script != nil {
			script(p)
		}
	}()
	c := newConn(Location{Mode: Daemon, Socket: "/fake/socket"}, client)
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	defer cancel()
	if err := c.handshake(ctx); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	t.Cleanup(func() {
		select {
		case <-done:
		case <-time.After(2 * peerTimeout):
			t.Error("fake daemon script did not finish")
		}
		c.Close()
	})
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	t.Cleanup(cancel)
	return ctx
}

// Store paths used in the byte tests.
const (
	pathA = "/nix/store/l6y0ksiq9a558a12azxw4kr9w5j2z52r-ref-doc-dep"
	pathB = "/nix/store/m647zn09hzv7n18i15qr20d42vhc7iq0-ref-doc-app"
	drvB  = "/nix/store/iqr8x8r7frih08ws0q5aycg2f2n08q62-ref-doc-app.drv"
)
