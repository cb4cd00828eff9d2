# Entry point of nix-aurora.
#
#   (import ./. {}).aurora                      the job library (no nixpkgs needed)
#   (import ./. { inherit pkgs; }).nix-init     nix-init built from source with nixpkgs
#   (import ./. { inherit pkgs; }).nixaurora    the nixaurora CLI, likewise
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
  goProgram = { pname, description }: static.buildGoModule {
    inherit pname version src;
    subPackages = [ "cmd/${pname}" ];
    # The hash of `go mod vendor`; a test recomputes it, so it cannot go stale.
    vendorHash = "sha256-uYeJO5Kmzt4nnTgtRBvKpUG7MIAmflQXQ7WK7WjQFus=";
    buildInputs = [ static.xz ];
    env.CGO_ENABLED = "1";
    tags = [ "netgo" "osusergo" ];
    ldflags = [ "-s" "-w" "-X main.version=${version}" "-linkmode external" "-extldflags -static" ];
    meta = {
      inherit description;
      mainProgram = pname;
    };
  };
  fromSource = goProgram {
    pname = "nix-init";
    description = "Init process for Aurora sandboxes: realises and roots Nix closures";
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

  # The config compiler's CLI, built as nix-init is (static, liblzma).
  nixaurora =
    if pkgs != null then goProgram {
      pname = "nixaurora";
      description = "Builds, validates, pushes, diffs and runs Aurora jobs written in Nix";
    }
    else throw "nixaurora: pass pkgs (nixpkgs, to build from source)";
}
