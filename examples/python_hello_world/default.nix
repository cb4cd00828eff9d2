# The first example of the 2015 nix-aurora proof of concept: Aurora's
# tutorial program in Python, with the interpreter from nixpkgs. The
# process's cmdline names the interpreter and the script by store path, so
# nix-init brings both (and the interpreter's closure) to the node.
#
#   nix-build examples/python_hello_world
#
# Without nixpkgs (as CI does), with the project's stand-in packages:
#
#   nix-build examples/python_hello_world --arg pkgs 'import ./examples/stubpkgs {}'
#
# Health check: none runs. The job has no port, so no health port, and
# Aurora's executor uses its no-op checker: the task is healthy while the
# process runs (it greets a hundred times, then ends, and Aurora starts the
# service again). The kill is the runner's: SIGTERM to python3.
#
# `nixInit` passes settings to the init process, e.g. the cache to fetch
# from (see examples/README.md).
{ pkgs ? import <nixpkgs> { }, aurora ? import ../../nix, nixInit ? { } }:

with aurora;

let
  helloWorldPy = pkgs.writeText "hello_world.py" (builtins.readFile ./hello_world.py);
in
Service {
  cluster = "devcluster";
  role = "www-data";
  environment = "devel";
  name = "python_hello_world";
  inherit nixInit;

  task = Task {
    processes = [
      (Process {
        name = "hello_world";
        cmdline = "${pkgs.python3}/bin/python3 -u ${helloWorldPy}";
      })
    ];
    resources = Resources { cpu = 1; ram = 64 * MB; disk = 8 * MB; };
  };
}
