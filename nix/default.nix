# The nix-aurora library: an attribute set of constructors (Job, Task,
# Process, ...), helpers and units. Needs no nixpkgs.
#
# The derivations it makes (each job's JSON, each process's root) are for
# builtins.currentSystem, which pure evaluation (flakes) does not have.
# There, take the library for a system with forSystem:
#   (nix-aurora.lib.forSystem "x86_64-linux").Job { ... }
# It is the same file, read with builtins.currentSystem set to the system.
let
  withForSystem = lib: lib // { inherit forSystem; };
  forSystem = system:
    withForSystem (scopedImport { builtins = builtins // { currentSystem = system; }; } ./aurora.nix);
in
withForSystem (import ./aurora.nix)
