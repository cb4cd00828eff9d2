# The nix-aurora library: an attribute set of constructors (Job, Task,
# Process, ...), helpers and units. Needs no nixpkgs.
import ./aurora.nix
