# A flake that keeps Aurora jobs as outputs, for the machine's system:
#
#   nixaurora build .#jobs.hello         build, validate, print the JSON's path
#   nix build .#jobs.hello               the same JSON, without the checks
#   nixaurora run .#jobs.hello           run it here, as Thermos would
#
# Jobs live in legacyPackages.SYSTEM.jobs.NAME: nix build looks up .#ATTR
# as packages.SYSTEM.ATTR, then legacyPackages.SYSTEM.ATTR, and
# legacyPackages may nest (packages must be derivations, one level deep).
# A flake is evaluated purely, with no builtins.currentSystem, so the job
# library is taken for each system with lib.forSystem.
#
# It builds offline with builtins only. Outside this repository, take
# nix-aurora from GitHub:
#   inputs.nix-aurora.url = "github:nix-aurora/nix-aurora";
# Jobs need nix-aurora's library only, so its nixpkgs input is never
# fetched for them. Jobs that run nixpkgs' programs take nixpkgs as an
# input of their own; `inputs.nix-aurora.inputs.nixpkgs.follows =
# "nixpkgs";` then builds nixaurora from the same nixpkgs.
{
  inputs.nix-aurora.url = "path:../..";

  outputs = { self, nix-aurora }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: builtins.listToAttrs
        (map (system: { name = system; value = f system; }) systems);

      jobsFor = system:
        let
          aurora = nix-aurora.lib.forSystem system;

          # A program in the store, so that the process has a closure for
          # nix-init to fetch. Builders start with PATH=/path-not-set.
          hello = derivation {
            name = "flake-hello";
            inherit system;
            builder = "/bin/sh";
            args = [ "-c" ''
              printf '#!/bin/sh\necho "hello from a flake (instance $1)"\n' > $out
              /bin/chmod 0555 $out
            '' ];
          };
        in
        with aurora; {
          hello = Job {
            cluster = "devcluster";
            role = "www-data";
            environment = "devel";
            name = "flake_hello";
            task = Task {
              processes = [
                (Process { name = "hello"; cmdline = "${hello} {{mesos.instance}}"; })
              ];
              resources = Resources { cpu = 0.1; ram = 16 * MB; disk = 16 * MB; };
            };
          };
        };
    in
    {
      legacyPackages = forAllSystems (system: { jobs = jobsFor system; });
    };
}
