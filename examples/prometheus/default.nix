# The second example of the 2015 nix-aurora proof of concept: a Prometheus
# server from nixpkgs, on a port that Aurora assigns.
#
#   nix-build examples/prometheus
#
# Without nixpkgs (as CI does), with the project's stand-in packages:
#
#   nix-build examples/prometheus --arg pkgs 'import ./examples/stubpkgs {}'
{ pkgs ? import <nixpkgs> { }, aurora ? import ../../nix }:

with aurora;

let
  # Prometheus scrapes itself, so its config needs the port; but Thermos
  # binds {{thermos.ports[http]}} in cmdlines only, never in files. The
  # store holds a template, and templateFile renders it into the sandbox
  # when the process starts (nix-init render) and yields the file's path.
  configTemplate = pkgs.writeText "prometheus.yml.in" ''
    global:
      scrape_interval: 15s
      evaluation_interval: 15s
      external_labels:
        monitor: nix-aurora
        instance: "{{mesos.instance}}"

    scrape_configs:
      - job_name: prometheus
        static_configs:
          - targets: ['localhost:{{thermos.ports[http]}}']
  '';

  prometheus = Process {
    name = "prometheus";
    cmdline = builtins.concatStringsSep " " [
      "${pkgs.prometheus}/bin/prometheus"
      "--config.file=${templateFile configTemplate}"
      "--storage.tsdb.path=data"
      "--web.listen-address=:{{thermos.ports[http]}}"
    ];
  };
in
Service {
  cluster = "devcluster";
  role = "www-data";
  environment = "devel";
  name = "prometheus";

  task = Task {
    processes = [ prometheus ];
    resources = Resources { cpu = 1; ram = 512 * MB; disk = 1 * GB; };
  };

  announce = Announcer { primary_port = "http"; };
}
