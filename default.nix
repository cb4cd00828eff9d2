# Entry point of nix-aurora. `pkgs` is accepted so that callers can pass
# their nixpkgs the same way to every attribute; the library needs none.
{ pkgs ? null }:
{
  aurora = import ./nix;
}
