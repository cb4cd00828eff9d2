# A cron job: every morning, a report of the sandbox it runs in.
#
# Builds offline with builtins only:  nix-build examples/cron_report
# then:  aurora cron schedule devcluster/www-data/devel/cron_report ./result --read-json
# (`aurora job create` refuses a job with a cron schedule.)
#
# Each run is a fresh sandbox: `collect` writes what it finds there (the
# run's task id and instance, the host, the files and the free space of the
# sandbox) to facts.txt, then `report` renders report.txt from those facts
# and a heading kept in its own store path, and prints it to its stdout log.
# The programs use sh and the runner's PATH (date, uname, ls, df) only.
#
# Health check: none runs. The job has no port, so no health port, and
# Aurora's executor uses its no-op checker; each run ends by itself.
# `nixInit` passes settings to the init process, e.g. the cache to fetch
# from (see examples/README.md).
{ aurora ? import ../../nix, nixInit ? { }, schedule ? "0 6 * * *" }:

let
  # Builders start with PATH=/path-not-set; mkdir and chmod come from the
  # build machine's /bin.
  PATH = "/bin:/usr/bin";

  # The report's heading: its own store path in the closure of `report`.
  heading = derivation {
    name = "cron-report-heading";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "printf '%s\\n' 'Sandbox report (nix-aurora cron_report example)' > $out" ];
  };

  # The programs as /bin/sh scripts, passed as files so that no quoting
  # stands between this file and the scripts.
  programs = derivation {
    name = "cron-report";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    inherit PATH;
    collect = ''
      #!/bin/sh
      # cron-collect TASK_ID INSTANCE OUT: record facts about this run and
      # its sandbox (the working directory) as KEY=VALUE lines in OUT.
      set -e
      n=0
      for f in * .[!.]*; do
        [ -e "$f" ] || continue
        n=$((n + 1))
      done
      {
        printf 'task_id=%s\n' "$1"
        printf 'instance=%s\n' "$2"
        printf 'host=%s\n' "$(uname -n)"
        printf 'started=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        printf 'sandbox=%s\n' "$PWD"
        printf 'free_kib=%s\n' "$(df -Pk . | { read -r _; read -r _ _ _ free _; printf '%s' "$free"; })"
        printf 'entries=%s\n' "$n"
      } > "$3.tmp"
      mv "$3.tmp" "$3"
    '';
    report = ''
      #!/bin/sh
      # cron-report FACTS OUT: render the facts as a report in OUT and print it.
      set -e
      {
        while IFS= read -r line; do printf '%s\n' "$line"; done < ${heading}
        while IFS='=' read -r key value; do
          printf '  %-10s %s\n' "$key" "$value"
        done < "$1"
        printf 'Sandbox listing:\n'
        ls -la
      } > "$2.tmp"
      mv "$2.tmp" "$2"
      while IFS= read -r line; do printf '%s\n' "$line"; done < "$2"
    '';
    passAsFile = [ "collect" "report" ];
    args = [
      "-c"
      ''
        set -e
        mkdir -p "$out/bin"
        while IFS= read -r line; do printf '%s\n' "$line"; done < "$collectPath" > "$out/bin/cron-collect"
        while IFS= read -r line; do printf '%s\n' "$line"; done < "$reportPath" > "$out/bin/cron-report"
        chmod 0555 "$out/bin/cron-collect" "$out/bin/cron-report"
      ''
    ];
  };
in
with aurora;
let
  collect = Process {
    name = "collect";
    cmdline = "${programs}/bin/cron-collect {{thermos.task_id}} {{mesos.instance}} facts.txt";
  };

  report = Process {
    name = "report";
    cmdline = "${programs}/bin/cron-report facts.txt report.txt";
  };
in
Job {
  cluster = "devcluster";
  role = "www-data";
  environment = "devel";
  name = "cron_report";
  inherit nixInit;

  # Minute, hour, day of month, month, day of week, in the scheduler's cron
  # time zone (GMT unless the scheduler is told otherwise).
  cron_schedule = schedule;
  # A run still going when the next one is due is left alone, and the new
  # one is skipped. (Aurora reads the policy in any case.)
  cron_collision_policy = "CANCEL_NEW";

  task = SequentialTask {
    processes = [ collect report ];
    resources = Resources { cpu = 0.25; ram = 16 * MB; disk = 16 * MB; };
  };

  contact = "reports@example.org";
  metadata = [ (Metadata { key = "example"; value = "{{name}} on {{cluster}}"; }) ];
}
