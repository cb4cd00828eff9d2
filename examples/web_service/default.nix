# A long-running service with most of what a real one uses: an order
# between processes, a port, an http health check, the http kill lifecycle,
# an announced endpoint, a rolling update policy and a final (cleanup)
# process.
#
# Builds offline with builtins only:  nix-build examples/web_service
# then:  aurora job create devcluster/www-data/devel/web_service ./result --read-json
#
# The server really serves, so that the job runs healthy on a cluster. It
# is tcpserve (tcpserve.s: a 1 KB static x86_64 Linux program, written out
# byte by byte from tcpserve.hex, since builtins cannot compile one), which
# listens on the port Thermos assigns and runs web-handler, a /bin/sh
# script, for each connection:
#   GET /health            200 "ok": the executor's health check (the
#                          health port is the http port, see `announce`)
#   GET /, GET /FILE       the site, a store path in the server's closure
#   POST /quitquitquit     200, then the server stops accepting and exits 0
#   POST /abortabortabort  200, then the server is killed
# The last two are Aurora's default kill lifecycle: the executor POSTs them
# before it kills the task. For another architecture or a real site, put a
# real server in its place (e.g. "${pkgs.nginx}/bin/nginx -c ...").
#
# `nixInit` passes settings to the init processes, e.g. the cache to fetch
# from (see examples/README.md).
{ aurora ? import ../../nix, nixInit ? { } }:

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

  # tcpserve's bytes, from hexadecimal to the octal escapes of printf.
  octalEscapes = hex:
    let
      digits = builtins.listToAttrs (builtins.genList
        (i: { name = builtins.substring i 1 "0123456789abcdef"; value = i; }) 16);
      text = builtins.replaceStrings [ "\n" " " ] [ "" "" ] hex;
      byte = i: digits.${builtins.substring (2 * i) 1 text} * 16
        + digits.${builtins.substring (2 * i + 1) 1 text};
      octal = b: "\\" + toString (b / 64) + toString (b / 8 - b / 64 * 8) + toString (b - b / 8 * 8);
    in
    builtins.concatStringsSep "" (builtins.genList (i: octal (byte i)) (builtins.stringLength text / 2));

  # The program is the same on every build machine: it is written, not
  # compiled.
  tcpserve = derivation {
    name = "tcpserve";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    inherit PATH;
    bytes = octalEscapes (builtins.readFile ./tcpserve.hex);
    args = [
      "-c"
      ''
        set -e
        mkdir -p "$out/bin"
        printf "$bytes" > "$out/bin/tcpserve"
        chmod 0555 "$out/bin/tcpserve"
      ''
    ];
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
      # web-server CONFIG: reads `listen ADDR:PORT` and `root DIR` from its
      # run-time config, then becomes tcpserve, which runs web-handler DIR
      # for each connection.
      while read -r key value; do
        case $key in
          listen) listen=$value ;;
          root) root=$value ;;
        esac
      done < "$1"
      if [ -z "$listen" ] || [ -z "$root" ]; then
        printf 'web-server: %s needs a listen and a root line\n' "$1" >&2
        exit 2
      fi
      printf 'web-server: serving %s on %s\n' "$root" "$listen"
      exec ${tcpserve}/bin/tcpserve "''${listen%:*}" "''${listen##*:}" "''${0%/*}/web-handler" "$root"
    '';
    handler = ''
      #!/bin/sh
      # web-handler ROOT: answers one HTTP request, read from stdin, on
      # stdout; tcpserve, its parent, runs it for each connection.
      root=$1
      cr=$(printf '\r')

      # reply STATUS TYPE BODY
      reply() {
        printf 'HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' \
          "$1" "$2" "''${#3}" "$3"
      }

      IFS=' ' read -r method target version || exit 0
      # Read the headers too: closing a connection with unread input resets
      # it, and the client may lose the reply.
      while IFS= read -r line; do
        case $line in "$cr" | "") break ;; esac
      done
      target=''${target%%\?*}

      case "$method $target" in
        "GET /health")
          reply '200 OK' text/plain ok ;;
        "POST /quitquitquit")
          reply '200 OK' text/plain 'stopping'
          printf 'web-handler: %s: stopping the server\n' "$target" >&2
          kill -TERM "$PPID" ;;
        "POST /abortabortabort")
          reply '200 OK' text/plain 'aborting'
          printf 'web-handler: %s: killing the server\n' "$target" >&2
          kill -KILL "$PPID" ;;
        "GET /"* | "HEAD /"*)
          case "$target/" in
            */../*)
              reply '404 Not Found' text/plain 'not found'
              exit 0 ;;
          esac
          file=$root$target
          if [ -d "$file" ]; then file=''${file%/}/index.html; fi
          if [ ! -f "$file" ] || [ ! -r "$file" ]; then
            reply '404 Not Found' text/plain 'not found'
            exit 0
          fi
          case $file in
            *.html) type=text/html ;;
            *.txt) type=text/plain ;;
            *) type=application/octet-stream ;;
          esac
          printf 'HTTP/1.0 200 OK\r\nContent-Type: %s\r\nConnection: close\r\n\r\n' "$type"
          # cat comes from the runner's PATH.
          if [ "$method" = GET ]; then cat "$file"; fi ;;
        *)
          reply '405 Method Not Allowed' text/plain 'method not allowed' ;;
      esac
    '';
    cleanup = ''
      #!/bin/sh
      # web-cleanup: runs as a final process, after the server has stopped.
      printf 'web-cleanup: clearing %s\n' "$1"
      : > "$1"
    '';
    passAsFile = [ "server" "handler" "cleanup" ];
    args = [
      "-c"
      ''
        set -e
        mkdir -p "$out/bin"
        while IFS= read -r line; do printf '%s\n' "$line"; done < "$serverPath" > "$out/bin/web-server"
        while IFS= read -r line; do printf '%s\n' "$line"; done < "$handlerPath" > "$out/bin/web-handler"
        while IFS= read -r line; do printf '%s\n' "$line"; done < "$cleanupPath" > "$out/bin/web-cleanup"
        chmod 0555 "$out/bin/web-server" "$out/bin/web-handler" "$out/bin/web-cleanup"
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
    cmdline = "printf 'listen 0.0.0.0:{{thermos.ports[http]}}\\nroot ${site}\\n' > server.conf";
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
  inherit nixInit;

  task = Task {
    processes = [ configure server cleanup ];
    constraints = order [ configure server ];
    resources = Resources { cpu = 0.5; ram = 128 * MB; disk = 256 * MB; };
  };

  # Clients find the service through the http port; the health checker and
  # the kill lifecycle (Aurora's default: POST /quitquitquit, then
  # /abortabortabort, 5 s apart) use the port named health, an alias of
  # http.
  announce = Announcer {
    primary_port = "http";
    portmap = { aurora = "http"; health = "http"; };
  };

  # The executor GETs /health on the health port and wants "ok".
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
