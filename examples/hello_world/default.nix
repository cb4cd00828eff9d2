# Aurora's tutorial job, hello_world, with its program in the Nix store.
#
# Builds offline with builtins only:  nix-build examples/hello_world
# then:  aurora job create devcluster/www-data/devel/hello_world ./result --read-json
#
# The program and the greeting it prints are two store paths, so the
# process's root closure has several paths for nix-init to fetch.
# `nixInit` passes settings to the init process, e.g. the cache to fetch from:
#   --arg nixInit '{ substituters = [ "https://cache.example.org" ]; trustedPublicKeys = [ "..." ]; }'
# `message` changes the greeting, and so every store path of the closure.
#
# Health check: none runs. The job has no port, so no health port, and
# Aurora's executor uses its no-op checker; the process prints and ends.
{ aurora ? import ../../nix, nixInit ? { }, message ? "This greeting was read from its own store path." }:

let
  # Builders start with PATH=/path-not-set; mkdir and chmod come from the
  # build machine's /bin.
  PATH = "/bin:/usr/bin";

  greeting = derivation {
    name = "hello-world-greeting";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    inherit message;
    args = [ "-c" "printf '%s\\n' \"$message\" > $out" ];
  };

  # The program text is passed as a file and copied with sh builtins, so
  # that no quoting stands between this file and the script.
  helloWorld = derivation {
    name = "hello-world";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    inherit PATH;
    script = ''
      #!/bin/sh
      # hello_world [INSTANCE]: greet, then print the greeting stored in Nix.
      printf 'hello world from nix-aurora (instance %s)\n' "''${1:-unknown}"
      while IFS= read -r line; do
        printf '%s\n' "$line"
      done < ${greeting}
    '';
    passAsFile = [ "script" ];
    args = [
      "-c"
      ''
        set -e
        mkdir -p "$out/bin"
        while IFS= read -r line; do printf '%s\n' "$line"; done < "$scriptPath" > "$out/bin/hello_world"
        chmod 0555 "$out/bin/hello_world"
      ''
    ];
  };
in
with aurora;
Job {
  cluster = "devcluster";
  role = "www-data";
  environment = "devel";
  name = "hello_world";
  inherit nixInit;
  task = Task {
    processes = [
      (Process {
        name = "hello_world";
        cmdline = "${helloWorld}/bin/hello_world {{mesos.instance}}";
      })
    ];
    resources = Resources { cpu = 1; ram = 1 * MB; disk = 8 * MB; };
  };
}
