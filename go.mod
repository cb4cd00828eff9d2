module github.com/nix-aurora/nix-aurora

go 1.26.0

require (
	github.com/cenkalti/backoff/v4 v4.3.0
	github.com/nix-community/go-nix v0.0.0-20250101154619-4bdde671e0a1
	github.com/spf13/pflag v1.1.0
)
