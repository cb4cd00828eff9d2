package binarycache

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
)

// PublicKey is a trusted key, as in nix.conf's trusted-public-keys:
// "name:base64(32-byte ed25519 public key)".
type PublicKey struct {
	Name string
	Key  ed25519.PublicKey
}

// SecretKey is a signing key, in the format of
// `nix-store --generate-binary-cache-key`: "name:base64(64 bytes)", the
// 32-byte seed followed by the public key (Go's ed25519.PrivateKey layout).
type SecretKey struct {
	Name string
	Key  ed25519.PrivateKey
}

func splitKey(s, what string) (string, []byte, error) {
	s = strings.TrimSpace(s)
	name, b64, ok := strings.Cut(s, ":")
	if !ok || name == "" || b64 == "" {
		return "", nil, fmt.Errorf("%s %q: want name:base64", what, clip(s))
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", nil, fmt.Errorf("%s %q: bad base64: %v", what, name, err)
	}
	return name, raw, nil
}

// ParsePublicKey parses "name:base64(32 bytes)".
func ParsePublicKey(s string) (PublicKey, error) {
	name, raw, err := splitKey(s, "public key")
	if err != nil {
		return PublicKey{}, err
	}
	if len(raw) != ed25519.PublicKeySize {
		return PublicKey{}, fmt.Errorf("public key %q: %d bytes, want %d", name, len(raw), ed25519.PublicKeySize)
	}
	return PublicKey{Name: name, Key: ed25519.PublicKey(raw)}, nil
}

// ParsePublicKeys parses a whitespace-separated list of public keys, as in
// nix.conf's trusted-public-keys.
func ParsePublicKeys(s string) ([]PublicKey, error) {
	var keys []PublicKey
	for _, f := range strings.Fields(s) {
		k, err := ParsePublicKey(f)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// String returns "name:base64".
func (k PublicKey) String() string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(k.Key)
}

// ParseSecretKey parses "name:base64(64 bytes)".
func ParseSecretKey(s string) (SecretKey, error) {
	name, raw, err := splitKey(s, "secret key")
	if err != nil {
		return SecretKey{}, err
	}
	if len(raw) != ed25519.PrivateKeySize {
		return SecretKey{}, fmt.Errorf("secret key %q: %d bytes, want %d", name, len(raw), ed25519.PrivateKeySize)
	}
	key := ed25519.PrivateKey(raw)
	// The second half must be the public key of the first.
	if !key.Public().(ed25519.PublicKey).Equal(ed25519.NewKeyFromSeed(key.Seed()).Public()) {
		return SecretKey{}, fmt.Errorf("secret key %q: its public half does not match its seed", name)
	}
	return SecretKey{Name: name, Key: key}, nil
}

// LoadSecretKey reads a secret key file (nix.conf's secret-key-files).
func LoadSecretKey(file string) (SecretKey, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return SecretKey{}, fmt.Errorf("reading secret key: %w", err)
	}
	k, err := ParseSecretKey(string(b))
	if err != nil {
		return SecretKey{}, fmt.Errorf("%s: %w", file, err)
	}
	return k, nil
}

// PublicKey returns the public half.
func (k SecretKey) PublicKey() PublicKey {
	return PublicKey{Name: k.Name, Key: k.Key.Public().(ed25519.PublicKey)}
}

// SignFingerprint returns "name:base64(signature)" of a fingerprint.
func (k SecretKey) SignFingerprint(fingerprint string) string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(ed25519.Sign(k.Key, []byte(fingerprint)))
}

// Sign adds the key's signature to the narinfo, replacing an earlier one
// by the same key name.
func Sign(ni *NarInfo, k SecretKey) error {
	if _, err := sha256Digest(ni.NarHash); err != nil {
		return fmt.Errorf("cannot sign %s: NarHash: %w", ni.StorePath, err)
	}
	if ni.NarSize == 0 {
		return fmt.Errorf("cannot sign %s: its NAR size is not known", ni.StorePath)
	}
	sigs := ni.Sigs[:0:0]
	for _, s := range ni.Sigs {
		if name, _, _ := strings.Cut(s, ":"); name != k.Name {
			sigs = append(sigs, s)
		}
	}
	ni.Sigs = sortedUnique(append(sigs, k.SignFingerprint(ni.Fingerprint())))
	return nil
}

// Verify accepts the narinfo iff at least one of its signatures verifies
// under a trusted key with the signature's name, as Nix 2.8 does.
// Signatures under names no key has are ignored; a signature under a
// trusted key's name that is not base64 of 64 bytes is an error
// (ErrBadSignature), as in Nix. Otherwise the error is ErrUntrusted.
//
// Content-addressed paths are treated like all others: they need a
// signature (Nix would also accept a CA path whose content address it can
// check against the store path; this package does not compute that).
func Verify(ni *NarInfo, keys []PublicKey) error {
	if len(ni.Sigs) == 0 {
		return fmt.Errorf("%w: the narinfo has no signatures", ErrUntrusted)
	}
	fp := []byte(ni.Fingerprint())
	var names []string
	for _, s := range ni.Sigs {
		name, b64, ok := strings.Cut(s, ":")
		if !ok || name == "" {
			names = append(names, "(malformed)")
			continue
		}
		names = append(names, name)
		var matched []PublicKey
		for _, k := range keys {
			if k.Name == name {
				matched = append(matched, k)
			}
		}
		if len(matched) == 0 {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(sig) != ed25519.SignatureSize {
			return fmt.Errorf("%w: signature by %q is not base64 of %d bytes", ErrBadSignature, name, ed25519.SignatureSize)
		}
		for _, k := range matched {
			if ed25519.Verify(k.Key, fp, sig) {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: signed by %s, none of which verifies under the trusted keys %s",
		ErrUntrusted, strings.Join(names, ", "), keyNames(keys))
}

func keyNames(keys []PublicKey) string {
	if len(keys) == 0 {
		return "(none configured)"
	}
	var n []string
	for _, k := range keys {
		n = append(n, k.Name)
	}
	return strings.Join(n, ", ")
}
