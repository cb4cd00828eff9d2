package store

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
)

func TestWireLiterals(t *testing.T) {
	// The handshake's first bytes and a padded string, as the reference
	// shows them on the wire.
	magic := []byte{0x63, 0x78, 0x69, 0x6e, 0, 0, 0, 0}
	if got := wb(nil).u64(workerMagic1); string(got) != string(magic) {
		t.Errorf("magic = %x, want %x", got, magic)
	}
	abc := []byte{3, 0, 0, 0, 0, 0, 0, 0, 'a', 'b', 'c', 0, 0, 0, 0, 0}
	if got := wb(nil).str("abc"); string(got) != string(abc) {
		t.Errorf("str = %x, want %x", got, abc)
	}
	if got := wb(nil).str("12345678"); len(got) != 16 {
		t.Errorf("8-byte string takes %d bytes, want 16 (no padding)", len(got))
	}
	if got := wb(nil).str(""); len(got) != 8 {
		t.Errorf("empty string takes %d bytes, want 8", len(got))
	}
}

func TestHandshakeVersions(t *testing.T) {
	for _, tc := range []struct {
		name     string
		daemon   int
		trust    uint64
		protocol int
		version  string
		want     Trust
	}{
		{"1.21", 0x115, 0, 0x115, "", TrustUnknown},
		{"1.25", 0x119, 0, 0x119, "", TrustUnknown},
		{"1.34 (Nix 2.8)", 0x122, 0, 0x122, "2.8.0", TrustUnknown},
		{"1.35 unknown", 0x123, 0, 0x123, "2.8.0", TrustUnknown},
		{"1.35 trusted", 0x123, 1, 0x123, "2.8.0", Trusted},
		{"1.35 not trusted", 0x123, 2, 0x123, "2.8.0", NotTrusted},
		{"1.38 daemon negotiates 1.35", 0x126, 2, 0x123, "2.8.0", NotTrusted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fakeTrust(t, tc.daemon, tc.trust, nil)
			if c.Protocol() != tc.protocol {
				t.Errorf("Protocol() = %#x, want %#x", c.Protocol(), tc.protocol)
			}
			if c.DaemonVersion() != tc.version {
				t.Errorf("DaemonVersion() = %q, want %q", c.DaemonVersion(), tc.version)
			}
			if c.Trust() != tc.want {
				t.Errorf("Trust() = %v, want %v", c.Trust(), tc.want)
			}
		})
	}
}

// handshakeWith runs the client's handshake against a peer script that
// plays the whole exchange, and returns the client's error.
func handshakeWith(t *testing.T, script func(p *peer)) error {
	t.Helper()
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer server.Close()
		script(&peer{t: t, conn: server})
	}()
	c := newConn(Location{Mode: Daemon, Socket: "/fake/socket"}, client)
	err := c.handshake(ctxT(t))
	client.Close()
	<-done
	return err
}

func TestHandshakeRejectsOldDaemon(t *testing.T) {
	err := handshakeWith(t, func(p *peer) {
		p.expect("magic", wb(nil).u64(workerMagic1))
		p.send(wb(nil).u64(workerMagic2).u64(0x114))
		p.expectSilence(50e6) // the client must not go on
	})
	if err == nil || !strings.Contains(err.Error(), "1.20") || !strings.Contains(err.Error(), "1.21") {
		t.Fatalf("err = %v, want a refusal naming 1.20 and 1.21", err)
	}
}

func TestHandshakeRejectsNonDaemon(t *testing.T) {
	err := handshakeWith(t, func(p *peer) {
		p.expect("magic", wb(nil).u64(workerMagic1))
		p.send(wb(nil).u64(0x12345678).u64(0x122))
	})
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("err = %v, want ErrProtocol", err)
	}
}

func TestHandshakeStartupError(t *testing.T) {
	err := handshakeWith(t, func(p *peer) {
		p.expect("magic", wb(nil).u64(workerMagic1))
		p.send(wb(nil).u64(workerMagic2).u64(0x122))
		p.expect("client version", wb(nil).u64(clientVersion).u64(0).u64(0))
		p.send(wb(nil).str("2.8.0").u64(stderrError).str("Error").u64(0).str("Error").
			str("cannot open connection to remote store").u64(0).u64(0))
	})
	var de *DaemonError
	if !errors.As(err, &de) || de.Op != "handshake" || de.Message != "cannot open connection to remote store" {
		t.Fatalf("err = %#v, want the daemon's startup error", err)
	}
}

func TestHandshakeCancelled(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		p := &peer{t: t, conn: server}
		p.expect("magic", wb(nil).u64(workerMagic1))
		cancel() // ...and never answer.
	}()
	c := newConn(Location{Mode: Daemon, Socket: "/fake/socket"}, client)
	errc := make(chan error, 1)
	go func() { errc <- c.handshake(ctx) }()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}
