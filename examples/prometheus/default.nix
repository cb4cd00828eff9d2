# The second example of the 2015 nix-aurora proof of concept: a Prometheus
# server from nixpkgs, on a port that Aurora assigns.
#
#   nix-build examples/prometheus
#
# Without nixpkgs (as CI does), with the project's stand-in packages, whose
# prometheus serves the same health and lifecycle endpoints:
#
#   nix-build examples/prometheus --arg pkgs 'import ./examples/stubpkgs {}'
#
# Health check: the executor GETs Prometheus's own /-/healthy on the http
# port (the health port is an alias of it, see `announce`) and wants status
# 200, whatever the body says (its wording changed between releases).
# Kill: with --web.enable-lifecycle, Prometheus stops (flushing its data)
# on POST /-/quit, which the job's lifecycle calls before the runner's
# SIGTERM; anyone who reaches the port may then stop or reload it, so keep
# the port inside the cluster.
#
# `nixInit` passes settings to the init processes, e.g. the cache to fetch
# from (see examples/README.md); its `command` also renders the config.
{ pkgs ? import <nixpkgs> { }, aurora ? import ../../nix, nixInit ? { } }:

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

  render = templateFileWith (if nixInit ? command then { inherit (nixInit) command; } else { });

  prometheus = Process {
    name = "prometheus";
    cmdline = builtins.concatStringsSep " " [
      "${pkgs.prometheus}/bin/prometheus"
      "--config.file=${render configTemplate}"
      "--storage.tsdb.path=data"
      "--web.listen-address=:{{thermos.ports[http]}}"
      "--web.enable-lifecycle"
    ];
  };
in
Service {
  cluster = "devcluster";
  role = "www-data";
  environment = "devel";
  name = "prometheus";
  inherit nixInit;

  task = Task {
    processes = [ prometheus ];
    resources = Resources { cpu = 1; ram = 512 * MB; disk = 1 * GB; };
  };

  announce = Announcer {
    primary_port = "http";
    portmap = { aurora = "http"; health = "http"; };
  };

  health_check_config = HealthCheckConfig {
    health_checker = HealthCheckerConfig {
      http = HttpHealthChecker {
        endpoint = "/-/healthy";
        expected_response = "";
        expected_response_code = 200;
      };
    };
    # A slow answer (over timeout_secs, 1 s) is not yet a failed task.
    max_consecutive_failures = 2;
  };

  # Both steps of the kill lifecycle ask Prometheus to quit: it has no
  # harsher endpoint, and the runner's SIGTERM follows anyway.
  lifecycle = LifecycleConfig {
    http = HttpLifecycleConfig {
      graceful_shutdown_endpoint = "/-/quit";
      shutdown_endpoint = "/-/quit";
    };
  };
}
