package store

import (
	"context"
	"fmt"
)

const (
	workerMagic1 = 0x6e697863
	workerMagic2 = 0x6478696f

	// clientVersion is the protocol this client speaks: 1.35, the newest
	// without the feature exchange of 1.38. Lix 2.94+ refuses anything
	// older; Nix 2.8 speaks 1.34. Nothing newer pays: 1.36 and 1.37 change
	// only derivations and BuildResult (not what BuildPaths returns), and
	// through Nix 2.34 the daemon offers no feature in 1.38's exchange,
	// which costs one more round trip per connection (measured on 2.26.3
	// and 2.34.8: no faster handshake or operation at 1.38).
	clientVersion = 0x123
	// minVersion is the oldest daemon protocol accepted: 1.21, the first
	// with AddToStoreNar fed through STDERR_READ instead of a raw NAR.
	minVersion = 0x115
)

func versionString(v int) string { return fmt.Sprintf("%d.%d", v>>8, v&0xff) }

// handshake runs the protocol's opening (nix-reference 1.3). The daemon
// branches on our version or the minimum of both, depending on its age, so
// we branch on the minimum, which is what both sides then agree on.
func (c *Conn) handshake(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { c.t.Close() })
	err := c.handshakeSteps()
	if !stop() {
		return fmt.Errorf("handshake: %w", ctx.Err())
	}
	if err != nil {
		if c.child != nil {
			err = c.child.annotate(err)
		}
		return fmt.Errorf("handshake: %w", err)
	}
	return nil
}

func (c *Conn) handshakeSteps() error {
	e, d := &c.enc, &c.dec
	e.u64(workerMagic1)
	if err := c.flush(); err != nil {
		return err
	}
	magic := d.u64()
	daemonVersion := d.u64()
	if d.err != nil {
		return d.err
	}
	if magic != workerMagic2 {
		return protocolErrorf("the peer is not a Nix daemon (magic %#x)", magic)
	}
	if daemonVersion>>8 != 1 || daemonVersion > 0xffff {
		return protocolErrorf("the daemon speaks protocol %#x, whose major version this client does not know", daemonVersion)
	}
	v := min(int(daemonVersion), clientVersion)
	if v < minVersion {
		return fmt.Errorf("the daemon speaks protocol %s, older than %s, the oldest this client supports (it speaks %s)",
			versionString(int(daemonVersion)), versionString(minVersion), versionString(clientVersion))
	}
	c.protocol = v

	e.u64(clientVersion)
	e.u64(0) // ≥ 1.14: obsolete CPU affinity, none
	e.u64(0) // ≥ 1.11: obsolete reserveSpace
	if err := c.flush(); err != nil {
		return err
	}
	if v >= 0x121 { // 1.33
		c.version = d.str()
	}
	if v >= 0x123 { // 1.35
		switch flag := d.u64(); {
		case d.err != nil:
		case flag == 0:
			c.trust = TrustUnknown
		case flag == 1:
			c.trust = Trusted
		case flag == 2:
			c.trust = NotTrusted
		default:
			return protocolErrorf("trusted flag %d", flag)
		}
	}
	if d.err != nil {
		return d.err
	}
	// Startup errors (e.g. the store cannot be opened) arrive here.
	if err := c.stderrLoop(nil, nil); err != nil {
		if de, ok := err.(*DaemonError); ok {
			de.Op = "handshake"
		}
		return err
	}
	return nil
}
