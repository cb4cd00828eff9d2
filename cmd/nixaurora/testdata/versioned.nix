# A job whose program depends on a library; the library's version is an
# argument, so that two builds differ only in that dependency.
{ libVersion ? "1.0", ram ? 16, aurora ? import ../../../nix }:
let
  mk = name: script: derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    args = [ "-c" script ];
  };
  lib = mk "libgreet-${libVersion}" "echo 'greetings v${libVersion}' > $out";
  prog = mk "greeter" ''
    mkdir -p $out/bin
    printf '#!/bin/sh\ncat ${lib}\n' > $out/bin/greeter
    chmod +x $out/bin/greeter
  '';
in
with aurora;
Job {
  cluster = "devcluster"; role = "www-data"; environment = "devel"; name = "greeter";
  task = Task {
    processes = [
      (Process { name = "greet"; cmdline = "${prog}/bin/greeter"; })
      (Process { name = "idle"; cmdline = "sleep 1"; })
    ];
    resources = Resources { cpu = 0.5; ram = ram * MB; disk = 16 * MB; };
  };
}
