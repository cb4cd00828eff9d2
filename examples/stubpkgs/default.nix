# Stand-ins for the few nixpkgs attributes that the nixpkgs-style examples
# use, so that they build and run offline and in CI, where there is no
# nixpkgs:
#
#   nix-build examples/python_hello_world --arg pkgs 'import ./examples/stubpkgs {}'
#
# Each package has the layout of the real one (bin/python3, bin/prometheus)
# and builds with builtins only. Like nixpkgs, it takes an attribute set.
#
# Unlike the real packages, the programs are not in the store: python3 and
# prometheus exec the build machine's /usr/bin/python3 (Debian's path), so
# they run only on a machine that has it, such as the one that runs the
# tests. They are for building and testing the examples, not for a cluster;
# build with nixpkgs for that.
{ ... }:

let
  system = builtins.currentSystem;

  # The build machine's Python 3, which the stand-ins run (see above).
  hostPython3 = "/usr/bin/python3";

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

  # A package of /bin/sh scripts: programs maps each program's name to its
  # script; `files` maps other files' paths in the package to their text.
  # Each text reaches the builder as a file (passAsFile), in the variable
  # text<N>.
  stub = pname: version: { programs, files ? { } }:
    let
      names = builtins.attrNames programs;
      paths = builtins.attrNames files;
      # [ { attr; dest; mode; text; } ], programs first.
      entries = builtins.genList
        (i:
          let n = builtins.length names; in
          if i < n then
            let p = builtins.elemAt names i; in
            { attr = "text${toString i}"; dest = "bin/${p}"; mode = "0555"; text = programs.${p}; }
          else
            let f = builtins.elemAt paths (i - n); in
            { attr = "text${toString i}"; dest = f; mode = "0444"; text = files.${f}; })
        (builtins.length names + builtins.length paths);
    in
    derivation ({
      name = "${pname}-${version}";
      inherit system;
      builder = "/bin/sh";
      # Builders start with PATH=/path-not-set; mkdir and chmod come from
      # the build machine's /bin.
      PATH = "/bin:/usr/bin";
      passAsFile = map (e: e.attr) entries;
      args = [
        "-c"
        ("set -e\n" + builtins.concatStringsSep "" (map
          (e: ''
            mkdir -p "$out/${dirOf e.dest}"
            ${copy e.attr "$out/${e.dest}"}
            chmod ${e.mode} "$out/${e.dest}"
          '')
          entries))
      ];
    } // builtins.listToAttrs (map (e: { name = e.attr; value = e.text; }) entries));

  # A program that says it is a stand-in and fails.
  refuse = pname: ''
    #!/bin/sh
    printf '%s: stand-in for nixpkgs.${pname}, made to build the nix-aurora examples offline; it runs nothing\n' "$0" >&2
    exit 1
  '';

  # A program that runs the build machine's Python 3 with its arguments
  # (after `prefix`, which may name a script in the package as $out).
  runPython = pname: prefix: ''
    #!/bin/sh
    # Stand-in for nixpkgs.${pname}: runs the build machine's Python 3.
    if [ ! -x ${hostPython3} ]; then
      printf '%s: stand-in for nixpkgs.${pname}, which runs ${hostPython3}; this machine has none\n' "$0" >&2
      exit 127
    fi
    exec ${hostPython3} ${prefix}"$@"
  '';
in
{
  inherit writeText;

  python3 = stub "python3" "3-stub" {
    programs = { python3 = runPython "python3" ""; python = runPython "python3" ""; };
  };

  # bin/prometheus serves Prometheus's management API (prometheus-stand-in.py);
  # promtool refuses to run.
  prometheus = stub "prometheus" "2-stub" {
    programs = {
      prometheus = runPython "prometheus" "\"\${0%/bin/*}/share/prometheus-stand-in.py\" ";
      promtool = refuse "prometheus";
    };
    files."share/prometheus-stand-in.py" = builtins.readFile ./prometheus-stand-in.py;
  };
}
