# A long-running service with most of what a real one uses: an order
# between processes, a port, an http health check, an announced endpoint,
# a rolling update policy and a final (cleanup) process.
#
# Builds offline with builtins only:  nix-build examples/web_service
#
# The server is a stand-in that keeps running without serving anything, so
# that the example needs no nixpkgs; put a real one in its place (e.g.
# "${pkgs.nginx}/bin/nginx -c ...") to run it on a cluster, since Aurora's
# health checks expect an answer on the port.
{ aurora ? import ../../nix }:

let
  # Builders start with PATH=/path-not-set; mkdir and chmod come from the
  # build machine's /bin.
  PATH = "/bin:/usr/bin";

  # The site's static content: its own store path in the server's closure.
  site = derivation {
    name = "web-service-site";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    inherit PATH;
    args = [ "-c" "mkdir -p $out && printf '%s\\n' '<h1>served by nix-aurora</h1>' > $out/index.html" ];
  };

  # Programs as /bin/sh scripts; passed as files so no quoting stands
  # between this file and the scripts.
  programs = derivation {
    name = "web-service";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    inherit PATH;
    server = ''
      #!/bin/sh
      # web-server CONFIG: the stand-in server. It reads its run-time config,
      # says what it would serve, then stays up until Thermos stops it
      # (sleep comes from the runner's PATH).
      while IFS= read -r line; do
        printf 'web-server: %s\n' "$line"
      done < "$1"
      printf 'web-server: serving ${site}\n'
      while :; do sleep 3600; done
    '';
    cleanup = ''
      #!/bin/sh
      # web-cleanup: runs as a final process, after the server has stopped.
      printf 'web-cleanup: clearing %s\n' "$1"
      : > "$1"
    '';
    passAsFile = [ "server" "cleanup" ];
    args = [
      "-c"
      ''
        set -e
        mkdir -p "$out/bin"
        while IFS= read -r line; do printf '%s\n' "$line"; done < "$serverPath" > "$out/bin/web-server"
        while IFS= read -r line; do printf '%s\n' "$line"; done < "$cleanupPath" > "$out/bin/web-cleanup"
        chmod 0555 "$out/bin/web-server" "$out/bin/web-cleanup"
      ''
    ];
  };
in
with aurora;
let
  # Thermos binds {{thermos.ports[http]}} in cmdlines only, never in files,
  # so the config that needs the port is written at run time, in the
  # sandbox (bash's printf is a builtin: no package needed).
  configure = Process {
    name = "configure";
    cmdline = "printf 'listen {{thermos.ports[http]}}\\nroot ${site}\\n' > server.conf";
  };

  server = Process {
    name = "server";
    cmdline = "${programs}/bin/web-server server.conf";
  };

  cleanup = Process {
    name = "cleanup";
    cmdline = "${programs}/bin/web-cleanup server.conf";
    final = true;
  };
in
Service {
  cluster = "devcluster";
  role = "www-data";
  environment = "devel";
  name = "web_service";
  instances = 3;

  task = Task {
    processes = [ configure server cleanup ];
    constraints = order [ configure server ];
    resources = Resources { cpu = 0.5; ram = 128 * MB; disk = 256 * MB; };
  };

  # Clients find the service through the http port; the health checker and
  # the graceful shutdown use the port named health, an alias of http.
  announce = Announcer {
    primary_port = "http";
    portmap = { aurora = "http"; health = "http"; };
  };

  health_check_config = HealthCheckConfig {
    health_checker = HealthCheckerConfig {
      http = HttpHealthChecker { endpoint = "/health"; expected_response = "ok"; };
    };
    initial_interval_secs = 15;
    interval_secs = 10;
    max_consecutive_failures = 2;
  };

  # Two instances at a time, and a watch long enough to see 2 failed checks
  # after the initial interval (15 + 2 * 10 < 45).
  update_config = UpdateConfig {
    batch_size = 2;
    watch_secs = 45;
    max_total_failures = 1;
  };

  metadata = [ (Metadata { key = "example"; value = "web_service"; }) ];
}
