package binarycache

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// maxCAFileBytes bounds what LoadCA reads: system bundles are a few hundred
// KiB.
const maxCAFileBytes = 16 << 20

// CA is the bundle of certificate authorities that https:// caches'
// certificates must chain to: the file nix.conf's ssl-cert-file names
// (nixconf.Config.SSLCertFile). As curl's CAINFO does in Nix, it replaces
// the system's roots rather than adding to them.
type CA struct {
	File   string // the PEM file
	Origin string // where the setting came from: "FILE:LINE", "NIX_SSL_CERT_FILE", "default", ...
	Pool   *x509.CertPool
	Certs  int // certificates in the pool
}

// String names the setting, the file and its origin, for messages:
// "ssl-cert-file /etc/ca.pem (/etc/nix/nix.conf:3)".
func (ca *CA) String() string {
	if ca == nil {
		return "the system's CA certificates (no ssl-cert-file)"
	}
	return fmt.Sprintf("ssl-cert-file %s (%s)", ca.File, ca.Origin)
}

// LoadCA reads the CA bundle file, whose setting came from origin. An empty
// file name means none: it returns nil, and https caches are checked
// against the system's roots. A file that cannot be read, that holds no
// PEM certificate, or none that parses, is an error naming the setting, the
// file and the origin.
func LoadCA(file, origin string) (*CA, error) {
	if file == "" {
		return nil, nil
	}
	ca := &CA{File: file, Origin: origin, Pool: x509.NewCertPool()}
	fail := func(err error) (*CA, error) { return nil, fmt.Errorf("%s: %w", ca, err) }
	data, err := readCAFile(file)
	if err != nil {
		return fail(err)
	}
	var blocks int
	var firstErr error
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" || len(b.Headers) != 0 {
			continue
		}
		blocks++
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			// As AppendCertsFromPEM (and OpenSSL for a bundle) does: one
			// certificate Go cannot parse does not spoil the others.
			if firstErr == nil {
				firstErr = fmt.Errorf("certificate %d: %w", blocks, err)
			}
			continue
		}
		ca.Pool.AddCert(cert)
		ca.Certs++
	}
	switch {
	case blocks == 0:
		return fail(errors.New("no certificates in it (want PEM: -----BEGIN CERTIFICATE-----)"))
	case ca.Certs == 0:
		return fail(fmt.Errorf("none of its %d certificates parses: %w", blocks, firstErr))
	}
	return ca, nil
}

func readCAFile(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, unwrapPath(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, unwrapPath(err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	if fi.Size() > maxCAFileBytes {
		return nil, fmt.Errorf("%d bytes, more than a CA bundle can be (%d)", fi.Size(), maxCAFileBytes)
	}
	data := make([]byte, fi.Size())
	if _, err := f.ReadAt(data, 0); err != nil && fi.Size() > 0 {
		return nil, unwrapPath(err)
	}
	return data, nil
}

// unwrapPath drops a *fs.PathError's path, which the message names
// already; errors.Is(err, fs.ErrNotExist) still holds.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// tlsConfig is the client TLS configuration for ca (nil: the system's
// roots).
func (ca *CA) tlsConfig() *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != nil {
		cfg.RootCAs = ca.Pool
	}
	return cfg
}

// certError explains a certificate the client refused: which CA bundle it
// was checked against. Such an error is permanent: retrying cannot heal it.
func certError(err error, ca *CA) error {
	var ve *tls.CertificateVerificationError
	if !errors.As(err, &ve) {
		return err
	}
	hint := ""
	if ca == nil {
		hint = "; for a cache with an internal CA, set ssl-cert-file in nix.conf (or NIX_SSL_CERT_FILE)"
	}
	return &permanentError{fmt.Errorf("%w (the server's certificate was checked against %s%s)", err, ca, hint)}
}
