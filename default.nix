# Entry point of nix-aurora.
#
#   (import ./. {}).aurora                      the job library (no nixpkgs needed)
#   (import ./. { inherit pkgs; }).nix-init     nix-init built from source with nixpkgs
#   (import ./. { nixInitPrebuilt = ./stage; }).nix-init
#                                               a prebuilt static nix-init: the directory
#                                               (holding bin/nix-init) added to the store,
#                                               for machines without nixpkgs; a store path,
#                                               so evaluate it (nix-instantiate --eval)
#
# Either can be installed into the cluster-wide profile, the path the
# generated configs call by default (scripts/install-nix-init does it):
#   nix-env -p /nix/var/nix/profiles/default -i STOREPATH
{ pkgs ? null, nixInitPrebuilt ? null }:
let
  version = "0.1.0";

  # Only what the Go build needs, so that editing docs or examples does not
  # change nix-init's store path.
  src = builtins.path {
    name = "nix-aurora-src";
    path = ./.;
    filter = path: type:
      let base = baseNameOf path; in
      !(builtins.elem base [ ".git" "bin" "result" "examples" "bench" "nix" ".ci" "scripts" ])
      && builtins.match ".*\\.md" base == null;
  };

  # One static binary that decodes xz with liblzma, as scripts/build-nix-init
  # builds it: pkgsStatic (musl) links liblzma and the libc statically.
  static = pkgs.pkgsStatic;
  fromSource = static.buildGoModule {
    pname = "nix-init";
    inherit version src;
    subPackages = [ "cmd/nix-init" ];
    # The hash of `go mod vendor`; a test recomputes it, so it cannot go stale.
    vendorHash = "sha256-uYeJO5Kmzt4nnTgtRBvKpUG7MIAmflQXQ7WK7WjQFus=";
    buildInputs = [ static.xz ];
    env.CGO_ENABLED = "1";
    tags = [ "netgo" "osusergo" ];
    ldflags = [ "-s" "-w" "-X main.version=${version}" "-linkmode external" "-extldflags -static" ];
    meta = {
      description = "Init process for Aurora sandboxes: realises and roots Nix closures";
      mainProgram = "nix-init";
    };
  };

  prebuilt = builtins.path {
    name = "nix-init-${version}";
    path = nixInitPrebuilt;
  };
in
{
  aurora = import ./nix;

  nix-init =
    if nixInitPrebuilt != null then prebuilt
    else if pkgs != null then fromSource
    else throw "nix-init: pass pkgs (nixpkgs, to build from source) or nixInitPrebuilt (a directory holding bin/nix-init)";
}
