# nix-aurora as a flake (README.md, "Flakes").
#
#   lib                           the job library, as import ./nix; it needs
#                                 no input. In a flake, whose evaluation is
#                                 pure (no builtins.currentSystem), take it
#                                 for a system: (lib.forSystem system).Job
#   packages.SYSTEM.nix-init      default.nix's derivations, with the
#   packages.SYSTEM.nixaurora     nixpkgs input's packages (the default
#   packages.SYSTEM.default       package is nixaurora)
#
# A flake of jobs keeps them in legacyPackages.SYSTEM.jobs.NAME, where
# `nix build .#jobs.NAME` and `nixaurora build .#jobs.NAME` find them for
# the machine's system (examples/flake/flake.nix).
{
  description = "Apache Aurora jobs as Nix expressions, and nix-init, which realises their closures on the nodes";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      # Aurora runs on Mesos agents, which run Linux.
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: builtins.listToAttrs
        (map (system: { name = system; value = f system; }) systems);
    in
    {
      lib = import ./nix;

      packages = forAllSystems (system:
        let built = import ./. { pkgs = nixpkgs.legacyPackages.${system}; };
        in {
          inherit (built) nix-init nixaurora;
          default = built.nixaurora;
        });
    };
}
