# Stand-ins for the few nixpkgs attributes that the nixpkgs-style examples
# use, so that they build offline and in CI, where there is no nixpkgs:
#
#   nix-build examples/python_hello_world --arg pkgs 'import ./examples/stubpkgs {}'
#
# Each package has the layout of the real one (bin/python3, bin/prometheus,
# bin/sed) and builds with builtins only, but its programs just say that
# they are stand-ins and fail. Like nixpkgs, it takes an attribute set.
{ ... }:

let
  system = builtins.currentSystem;

  # Copy $<attr>Path (written by passAsFile) to the file `dest` with sh
  # builtins; the builder has nothing else.
  copy = attr: dest: ''
    while IFS= read -r line; do printf '%s\n' "$line"; done < "''$${attr}Path" > "${dest}"
    printf '%s' "$line" >> "${dest}"
  '';

  writeText = name: text: derivation {
    inherit name system text;
    builder = "/bin/sh";
    passAsFile = [ "text" ];
    args = [ "-c" ("set -e\n" + copy "text" "$out") ];
  };

  # A package whose programs are /bin/sh scripts that refuse to run.
  stub = pname: version: programs: derivation {
    name = "${pname}-${version}";
    inherit system;
    builder = "/bin/sh";
    # Builders start with PATH=/path-not-set; mkdir and chmod come from the
    # build machine's /bin.
    PATH = "/bin:/usr/bin";
    script = ''
      #!/bin/sh
      printf '%s: stand-in for nixpkgs.${pname}, made to build the nix-aurora examples offline; it runs nothing\n' "$0" >&2
      exit 1
    '';
    passAsFile = [ "script" ];
    args = [
      "-c"
      (''
        set -e
        mkdir -p "$out/bin"
      '' + builtins.concatStringsSep "" (map
        (program: ''
          ${copy "script" "$out/bin/${program}"}
          chmod 0555 "$out/bin/${program}"
        '')
        programs))
    ];
  };
in
{
  inherit writeText;
  python3 = stub "python3" "3-stub" [ "python3" "python" ];
  prometheus = stub "prometheus" "2-stub" [ "prometheus" "promtool" ];
}
