# Jobs and helpers that the library must accept.
#
# `cases`: the Go test evaluates each case and checks that `actual` equals
# `expected` (compared as JSON).
# `jobs`: the Go test builds each job and checks its JSON file: equal to the
# passthru `json`, no nulls, no bookkeeping keys, sizes as integers.
let
  aurora = import ../default.nix;
  inherit (aurora)
    Job Service Task Process Resources Constraint order Tasks SequentialTask
    SimpleTask UpdateConfig QueueUpdateStrategy HealthCheckConfig
    HealthCheckerConfig HttpHealthChecker ShellHealthChecker Announcer
    LifecycleConfig HttpLifecycleConfig Logger RotatePolicy Docker Container
    Parameter Metadata PartitionPolicy CountSlaPolicy PercentageSlaPolicy
    CoordinatorSlaPolicy ExecutorConfig B KB MB GB TB;
  inherit (builtins) attrNames filter head isInt length map stringLength substring toJSON;

  base = { cluster = "devcluster"; role = "www-data"; environment = "devel"; name = "t"; };
  resources = { cpu = 1; ram = 64 * MB; disk = 64 * MB; };
  proc = name: Process { inherit name; cmdline = "echo ${name}"; };
  finalProc = name: Process { inherit name; cmdline = "echo ${name}"; final = true; };

  job = attrs: Job (base // attrs);
  simpleJob = processes: job { task = Task { inherit processes resources; }; };
  withoutInit = attrs: job (attrs // { nixInit.enable = false; });

  names = processes: map (p: p.name) processes;
  processNamed = config: name: head (filter (p: p.name == name) config.task.processes);
  orders = config: map (c: c.order) config.task.constraints;
  public = value: removeAttrs value [ "_type" "_unknown" ];

  nixInitCommand = "/nix/var/nix/profiles/default/bin/nix-init";

  case = actual: expected: { inherit actual expected; };

  minimal = simpleJob [ (proc "a") ];

  withFinal = job {
    task = Task {
      processes = [ (proc "a") (proc "b") (finalProc "f") ];
      constraints = order [ "a" "b" ];
      inherit resources;
    };
  };

  # Every optional part of a job, through constructors.
  everything = Service (base // {
    contact = "owner@example.org";
    instances = 4;
    tier = "preferred";
    cron_collision_policy = "CANCEL_NEW";
    constraints = { host = "limit:1"; rack = "!r1,r2"; };
    metadata = [ (Metadata { key = "team"; value = "search"; }) ];
    max_task_failures = 3;
    priority = 1;
    production = true;
    enable_hooks = true;
    task_links = { logs = "http://logs.example.org/%shard_id%"; };
    partition_policy = PartitionPolicy { delay_secs = 30; };
    sla_policy = CoordinatorSlaPolicy { coordinator_url = "http://coordinator:8080"; };
    container = Docker { image = "debian:12"; parameters = [ (Parameter { name = "network"; value = "host"; }) ]; };
    executor_config = ExecutorConfig { data = "{}"; };
    announce = Announcer { primary_port = "http"; portmap = { aurora = "http"; health = "http"; }; zk_path = "/aurora/t"; };
    lifecycle = LifecycleConfig { http = HttpLifecycleConfig { graceful_shutdown_wait_secs = 10; }; };
    update_config = UpdateConfig {
      batch_size = 2;
      watch_secs = 60;
      max_total_failures = 1;
      pulse_interval_secs = 300;
      update_strategy = QueueUpdateStrategy { batch_size = 2; };
    };
    health_check_config = HealthCheckConfig {
      health_checker = HealthCheckerConfig { http = HttpHealthChecker { endpoint = "/ready"; expected_response_code = 200; }; };
      initial_interval_secs = 30;
      max_consecutive_failures = 3;
    };
    task = Task {
      name = "web";
      processes = [
        (Process { name = "server"; cmdline = "serve --port {{thermos.ports[http]}}"; logger = Logger { mode = "rotate"; rotate = RotatePolicy { log_size = 10.5 * MB; }; }; })
        (Process { name = "sidecar"; cmdline = "sidecar"; daemon = true; max_failures = 0; })
        (finalProc "flush")
      ];
      resources = Resources { cpu = 2.5; ram = 1.5 * GB; disk = 10 * GB; gpu = 1; };
      max_concurrency = 2;
      finalization_wait = 60;
      user = "www-data";
    };
  });

  plain = job {
    update_config = { watch_secs = 30; };
    health_check_config = { health_checker = { shell = { shell_command = "true"; }; }; };
    announce = { };
    container = { docker = { image = "debian:12"; }; };
    task = {
      processes = [ { name = "a"; cmdline = "echo a"; logger = { }; } ];
      constraints = [ { order = [ "a" ]; } ];
      resources = { cpu = 1; ram = 64 * MB; disk = 64 * MB; };
    };
  };

  constructed = job {
    update_config = UpdateConfig { watch_secs = 30; };
    health_check_config = HealthCheckConfig { health_checker = HealthCheckerConfig { shell = ShellHealthChecker { shell_command = "true"; }; }; };
    announce = Announcer { };
    container = Container { docker = Docker { image = "debian:12"; }; };
    task = Task {
      processes = [ (Process { name = "a"; cmdline = "echo a"; logger = Logger { }; }) ];
      constraints = order [ "a" ];
      resources = Resources { cpu = 1; ram = 64 * MB; disk = 64 * MB; };
    };
  };

  t1 = Task {
    name = "first";
    processes = [ (proc "a") (proc "b") ];
    constraints = order [ "a" "b" ];
    resources = { cpu = 1; ram = 64 * MB; disk = 1 * GB; };
    finalization_wait = 10;
    max_failures = 2;
  };
  t2 = Task {
    name = "second";
    processes = [ (proc "b") (proc "c") ];
    resources = Resources { cpu = 0.5; ram = 32 * MB; disk = 2 * GB; };
    finalization_wait = 40;
    max_failures = 3;
  };
  combined = (withoutInit { task = Tasks.combine [ t1 t2 ]; }).config.task;
  concatenated = (withoutInit { task = Tasks.concat [ t1 t2 ]; }).config.task;

  longName = builtins.concatStringsSep "" (builtins.genList (_: "p") 300);
  longJob = Job (base // {
    name = builtins.concatStringsSep "" (builtins.genList (_: "j") 255);
    task = Task { processes = [ (proc longName) ]; inherit resources; };
  });

  # Process "a" sees its own fields (name, max_failures), then the task's
  # (resources, processes), then the job's; self. and super. step in and
  # out; a negative index counts from the end, as in Python.
  scopedBindings = builtins.concatStringsSep " " [
    "{{name}} {{self.name}} {{super.name}} {{max_failures}} {{resources.ram}} {{task.resources.cpu}}"
    "{{processes[0].name}} {{processes[-1].name}} {{task.name}} {{instances}} {{cluster}} {{environment}}"
    "{{announce.primary_port}} {{announce.portmap[aurora]}} {{constraints[host]}} {{update_config.batch_size}}"
    "{{executor_config.name}} {{mesos.role}} {{mesos.cluster}} {{super}} {{super.super.role}} {{mesos}}"
    "{{thermos.ports[http.admin/v2]}} {{thermos.task_id}} {{thermos.user}} {{mesos.instance}} {{mesos.hostname}}"
    "{{&role}} {{&thermos.user}} {{&thermos.ports[http]}} {{&mesos.instance}}"
  ];
  bindingsJob = job {
    contact = "{{role}}@example.org {{mesos.instance}} {{thermos.ports.admin}} {{&anything}}";
    constraints = { host = "limit:1"; };
    metadata = [ (Metadata { key = "{{cluster}}"; value = "{{key}} {{name}} {{super.role}}"; }) ];
    announce = Announcer { zk_path = "/aurora/{{role}}/{{environment}}/{{name}}/{{primary_port}}"; };
    health_check_config = HealthCheckConfig {
      health_checker = HealthCheckerConfig { shell = ShellHealthChecker { shell_command = "check {{thermos.ports[health]}} {{name}} {{mesos.hostname}}"; }; };
    };
    task = Task { processes = [ (Process { name = "a"; cmdline = scopedBindings; }) (proc "b") ]; inherit resources; };
  };

  allBindings = "run {{thermos.ports[http]}} {{thermos.ports[admin-2_x]}} {{thermos.task_id}} {{thermos.user}} {{mesos.instance}} {{mesos.hostname}} {{role}} {{cluster}} {{environment}} {{name}} {{task.name}} {{instances}}";

  # A cmdline over the kernel's 128 KiB limit for one environment variable.
  bigCmdline = "echo " + builtins.concatStringsSep " " (builtins.genList (i: "argument-${toString i}") 15000);
in
{
  cases = {
    units = case [ B KB MB GB TB ] [ 1 1024 1048576 1073741824 1099511627776 ];

    jobDefaults = case (removeAttrs minimal.config [ "task" ]) {
      cluster = "devcluster";
      role = "www-data";
      environment = "devel";
      name = "t";
      instances = 1;
      cron_collision_policy = "KILL_EXISTING";
      update_config = {
        batch_size = 1;
        watch_secs = 45;
        max_per_shard_failures = 0;
        max_total_failures = 0;
        rollback_on_failure = true;
        wait_for_batch_completion = false;
        sla_aware = false;
      };
      metadata = [ ];
      service = false;
      max_task_failures = 1;
      production = false;
      priority = 0;
      health_check_config = {
        health_checker.http = { endpoint = "/health"; expected_response = "ok"; expected_response_code = 0; };
        initial_interval_secs = 15;
        interval_secs = 10;
        timeout_secs = 1;
        max_consecutive_failures = 0;
        min_consecutive_successes = 1;
      };
      lifecycle.http = {
        port = "health";
        graceful_shutdown_endpoint = "/quitquitquit";
        shutdown_endpoint = "/abortabortabort";
        graceful_shutdown_wait_secs = 5;
        shutdown_wait_secs = 5;
      };
      executor_config = { name = "AuroraExecutor"; data = ""; };
      enable_hooks = false;
    };

    taskDefaults = case (removeAttrs minimal.config.task [ "processes" "constraints" ]) {
      name = "a";
      resources = { cpu = 1; ram = 64 * MB; disk = 64 * MB; gpu = 0; };
      max_failures = 1;
      max_concurrency = 0;
      finalization_wait = 30;
    };

    processDefaults = case (processNamed minimal.config "a") {
      name = "a";
      cmdline = "echo a";
      max_failures = 1;
      daemon = false;
      ephemeral = false;
      min_duration = 5;
      final = false;
    };

    constructorDefaults = case
      {
        process = public (Process { name = "a"; cmdline = "x"; });
        resources = public (Resources { cpu = 1; ram = MB; disk = MB; });
        update = public (UpdateConfig { });
        checker = public (HttpHealthChecker { });
        partition = public (PartitionPolicy { });
        strategy = public (QueueUpdateStrategy { });
      }
      {
        process = { name = "a"; cmdline = "x"; max_failures = 1; daemon = false; ephemeral = false; min_duration = 5; final = false; };
        resources = { cpu = 1; ram = MB; disk = MB; gpu = 0; };
        update = { batch_size = 1; watch_secs = 45; max_per_shard_failures = 0; max_total_failures = 0; rollback_on_failure = true; wait_for_batch_completion = false; sla_aware = false; };
        checker = { endpoint = "/health"; expected_response = "ok"; expected_response_code = 0; };
        partition = { reschedule = true; delay_secs = 0; };
        strategy = { batch_size = 1; };
      };

    constructorRecordsUnknown = case
      (Process { name = "a"; cmdLine = "x"; })._unknown
      { cmdLine = "x"; };

    constructorIsIdempotent = case
      (Process (Process { name = "a"; cmdline = "x"; daemon = true; }) == Process { name = "a"; cmdline = "x"; daemon = true; })
      true;

    jobNameFromTask = case
      (Job (removeAttrs base [ "name" ] // { task = Task { name = "web"; processes = [ (proc "a") ]; inherit resources; }; })).config.name
      "web";

    # The first *user* process, though nix_init comes first in the JSON.
    jobNameFromFirstProcess = case
      (let c = (Job (removeAttrs base [ "name" ] // { task = Task { processes = [ (proc "a") (proc "b") ]; inherit resources; }; })).config;
      in { inherit (c) name; task = c.task.name; first = (head c.task.processes).name; })
      { name = "a"; task = "a"; first = "nix_init"; };

    initProcessForRegularProcesses = case
      (let j = simpleJob [ (proc "a") (proc "b") ];
      in {
        names = names j.config.task.processes;
        orders = orders j.config;
        init = processNamed j.config "nix_init";
      })
      (let j = simpleJob [ (proc "a") (proc "b") ];
      in {
        names = [ "nix_init" "a" "b" ];
        orders = [ [ "nix_init" "a" ] [ "nix_init" "b" ] ];
        init = {
          name = "nix_init";
          cmdline = "${nixInitCommand} 'a=${j.roots.a}' 'b=${j.roots.b}'";
          max_failures = 1;
          daemon = false;
          ephemeral = false;
          min_duration = 5;
          final = false;
        };
      });

    initProcessesWithFinalProcesses = case
      {
        names = names withFinal.config.task.processes;
        orders = orders withFinal.config;
        init = (processNamed withFinal.config "nix_init").cmdline;
        final = removeAttrs (processNamed withFinal.config "nix_init_final") [ "cmdline" ];
        finalCmdline = (processNamed withFinal.config "nix_init_final").cmdline;
      }
      {
        names = [ "nix_init" "nix_init_final" "a" "b" "f" ];
        # The user's constraints come first and are kept as they are.
        orders = [ [ "a" "b" ] [ "nix_init" "a" ] [ "nix_init" "b" ] [ "nix_init_final" "f" ] ];
        init = "${nixInitCommand} 'a=${withFinal.roots.a}' 'b=${withFinal.roots.b}'";
        final = { name = "nix_init_final"; max_failures = 1; daemon = false; ephemeral = false; min_duration = 5; final = true; };
        finalCmdline = "${nixInitCommand} 'f=${withFinal.roots.f}'";
      };

    onlyFinalProcesses = case
      (let j = simpleJob [ (finalProc "f") ]; in { names = names j.config.task.processes; orders = orders j.config; })
      { names = [ "nix_init_final" "f" ]; orders = [ [ "nix_init_final" "f" ] ]; };

    nixInitOptions = case
      (let
        j = job {
          task = Task { processes = [ (proc "a") ]; inherit resources; };
          nixInit = {
            command = "/opt/nix-init/bin/nix-init";
            substituters = [ "https://cache.example.org" "http://10.0.0.1:8080" ];
            trustedPublicKeys = [ "cache.example.org-1:AbC+/=" ];
            extraArgs = [ "--timeout" "it's 5m" ];
            maxFailures = 3;
          };
        };
      in { inherit (processNamed j.config "nix_init") cmdline max_failures; root = "${j.roots.a}"; })
      (let
        j = job { task = Task { processes = [ (proc "a") ]; inherit resources; }; };
      in {
        cmdline = "/opt/nix-init/bin/nix-init '--substituter' 'https://cache.example.org' '--substituter' 'http://10.0.0.1:8080' '--trusted-public-key' 'cache.example.org-1:AbC+/=' '--timeout' 'it'\\''s 5m' 'a=${j.roots.a}'";
        max_failures = 3;
        root = "${j.roots.a}";
      });

    # A command that is not a plain absolute path is quoted like the rest.
    nixInitCommandOnPath = case
      (processNamed (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; nixInit.command = "nix-init"; }).config "nix_init").cmdline
      "'nix-init' 'a=${(simpleJob [ (proc "a") ]).roots.a}'";

    nixInitDisabled = case
      (let
        j = withoutInit {
          task = Task { processes = [ (proc "nix_init") (finalProc "f") ]; constraints = order [ "nix_init" ]; inherit resources; };
        };
      in { names = names j.config.task.processes; orders = orders j.config; roots = attrNames j.roots; hasNixInit = j.config ? nixInit; })
      { names = [ "nix_init" "f" ]; orders = [ [ "nix_init" ] ]; roots = [ "f" "nix_init" ]; hasNixInit = false; };

    sizesAreIntegers = case
      (let r = (job { task = Task { processes = [ (proc "a") ]; resources = { cpu = 0.25; ram = 1.5 * MB; disk = 100.7 * MB; }; }; }).config.task.resources;
      in { inherit r; ints = isInt r.ram && isInt r.disk; })
      { r = { cpu = 0.25; ram = 1572864; disk = 105591603; gpu = 0; }; ints = true; };

    integralFloatsBecomeIntegers = case
      (let c = (job { task = Task { processes = [ (proc "a") ]; resources = resources // { cpu = 2.0; }; }; health_check_config.interval_secs = 20.0; }).config;
      in { cpu = isInt c.task.resources.cpu; interval = isInt c.health_check_config.interval_secs; })
      { cpu = true; interval = true; };

    # Floats reach the JSON exactly, on every Nix (2.8's toJSON would
    # print 6 significant digits): the text reads back as the author's
    # double, 0.1 + 0.2 included; integers of any size and integral floats
    # become integers.
    numbersAreExact = case
      (let
        j = v: job { task = Task { processes = [ (proc "a") ]; resources = resources // { cpu = v; }; }; };
        text = v: let m = builtins.match ".*\"cpu\":([^,}]*).*" (j v).json; in head m;
        combined = withoutInit { task = Tasks.combine [ (t1 // { resources = resources // { cpu = 0.1; }; }) (t2 // { resources = resources // { cpu = 0.2; }; }) ]; };
        floats = [ 0.1234567 1234.5678 (1.0 / 3) (0.1 + 0.2) 2.0000001 100000.5 99.123456 123456789.123 1.0e-7 (2.675 * 100) ];
      in {
        texts = map text floats;
        readBack = map (v: builtins.fromJSON (text v) == v) floats;
        combined = builtins.fromJSON combined.json == combined.config && combined.config.task.resources.cpu == 0.1 + 0.2;
        ints = map (v: let x = (j v).config.task.resources.cpu; in { inherit x; int = isInt x; }) [ 123456789 10000000000000000 1234567.0 (1.5 * 2) ];
      })
      {
        texts = [ "0.1234567" "1234.5678" "0.3333333333333333" "0.30000000000000004" "2.0000001" "100000.5" "99.123456" "123456789.123" "0.0000001" "267.5" ];
        readBack = [ true true true true true true true true true true ];
        combined = true;
        ints = [ { x = 123456789; int = true; } { x = 10000000000000000; int = true; } { x = 1234567; int = true; } { x = 3; int = true; } ];
      };

    nullsAreOmitted = case
      (let c = (job {
        contact = null;
        tier = null;
        announce = null;
        update_config.pulse_interval_secs = null;
        task = Task { processes = [ (proc "a") ]; inherit resources; user = null; };
      }).config;
      in map (k: c ? ${k}) [ "contact" "tier" "announce" "cron_schedule" "container" "sla_policy" "task_links" "partition_policy" "constraints" "nixInit" ]
        ++ [ (c.task ? user) (c.update_config ? pulse_interval_secs) ])
      [ false false false false false false false false false false false false ];

    orderHelper = case
      (map (c: c.order) (order [ (proc "a") "b" (proc "c") ] ++ order [ "c" "d" ] ++ order (proc "e")))
      [ [ "a" "b" "c" ] [ "c" "d" ] [ "e" ] ];

    orderPermittedAroundDaemonsAndEphemerals = case
      (orders (withoutInit {
        task = Task {
          processes = [ (proc "a") (Process { name = "d"; cmdline = "x"; daemon = true; }) (Process { name = "e"; cmdline = "x"; ephemeral = true; }) (Process { name = "e2"; cmdline = "x"; ephemeral = true; }) ];
          constraints = order [ "a" "d" ] ++ order [ "a" "e" "e2" ];
          inherit resources;
        };
      }).config)
      [ [ "a" "d" ] [ "a" "e" "e2" ] ];

    combine = case
      (combined // { processes = names combined.processes; })
      {
        name = "second";
        processes = [ "a" "b" "c" ];
        constraints = [ { order = [ "a" "b" ]; } ];
        resources = { cpu = 1.5; ram = 96 * MB; disk = 3 * GB; gpu = 0; };
        finalization_wait = 40;
        max_failures = 3;
        max_concurrency = 0;
      };

    concat = case
      (concatenated // { processes = names concatenated.processes; })
      {
        name = "second";
        processes = [ "a" "b" "c" ];
        constraints = [ { order = [ "a" "b" ]; } { order = [ "a" "c" ]; } { order = [ "b" "c" ]; } ];
        resources = { cpu = 1; ram = 64 * MB; disk = 2 * GB; gpu = 0; };
        finalization_wait = 50;
        max_failures = 3;
        max_concurrency = 0;
      };

    sequentialTask = case
      (orders (withoutInit { task = SequentialTask { processes = [ (proc "a") (proc "b") (proc "c") ]; inherit resources; }; }).config)
      [ [ "a" "b" "c" ] ];

    simpleTask = case
      (let t = (withoutInit { task = SimpleTask "hello" "echo hi"; }).config.task;
      in { inherit (t) name resources; processes = map (p: { inherit (p) name cmdline; }) t.processes; })
      {
        name = "hello";
        resources = { cpu = 1; ram = GB; disk = GB; gpu = 0; };
        processes = [ { name = "hello"; cmdline = "echo hi"; } ];
      };

    plainSetsEqualConstructors = case plain.config constructed.config;

    dockerIsWrapped = case
      (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; container = Docker { image = "debian:12"; }; }).config.container
      { docker = { image = "debian:12"; parameters = [ ]; }; };

    logger = case
      {
        rotate = (processNamed everything.config "server").logger;
        plain = (processNamed plain.config "a").logger;
      }
      {
        rotate = { destination = "file"; mode = "rotate"; rotate = { log_size = 11010048; backups = 5; }; };
        plain = { destination = "file"; mode = "standard"; };
      };

    loggerRotateDefaults = case
      (processNamed (simpleJob [ (Process { name = "a"; cmdline = "x"; logger = { mode = "rotate"; }; }) ]).config "a").logger
      { destination = "file"; mode = "rotate"; rotate = { log_size = 100 * MB; backups = 5; }; };

    announcerDefaults = case
      {
        default = plain.config.announce;
        https = (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; announce.primary_port = "https"; }).config.announce;
      }
      {
        default = { primary_port = "http"; portmap = { aurora = "http"; }; };
        https = { primary_port = "https"; portmap = { aurora = "https"; }; };
      };

    shellHealthCheck = case plain.config.health_check_config.health_checker { shell = { shell_command = "true"; }; };

    slaPolicies = case
      (map (p: (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; sla_policy = p; }).config.sla_policy) [
        { coordinator_url = "http://c:8080"; status_key = "maintenance"; }
        (CoordinatorSlaPolicy { coordinator_url = "http://coordinator:8080"; })
      ])
      [
        { coordinator_url = "http://c:8080"; status_key = "maintenance"; }
        { coordinator_url = "http://coordinator:8080"; status_key = "drain"; }
      ];

    everything = case
      (let c = everything.config; in {
        inherit (c) service contact instances tier cron_collision_policy constraints metadata max_task_failures priority production enable_hooks task_links partition_policy sla_policy container executor_config announce lifecycle update_config;
        resources = c.task.resources;
        user = c.task.user;
        names = names c.task.processes;
        checker = c.health_check_config.health_checker;
      })
      {
        service = true;
        contact = "owner@example.org";
        instances = 4;
        tier = "preferred";
        cron_collision_policy = "CANCEL_NEW";
        constraints = { host = "limit:1"; rack = "!r1,r2"; };
        metadata = [ { key = "team"; value = "search"; } ];
        max_task_failures = 3;
        priority = 1;
        production = true;
        enable_hooks = true;
        task_links = { logs = "http://logs.example.org/%shard_id%"; };
        partition_policy = { reschedule = true; delay_secs = 30; };
        sla_policy = { coordinator_url = "http://coordinator:8080"; status_key = "drain"; };
        container.docker = { image = "debian:12"; parameters = [ { name = "network"; value = "host"; } ]; };
        executor_config = { name = "AuroraExecutor"; data = "{}"; };
        announce = { primary_port = "http"; portmap = { aurora = "http"; health = "http"; }; zk_path = "/aurora/t"; };
        lifecycle.http = {
          port = "health";
          graceful_shutdown_endpoint = "/quitquitquit";
          shutdown_endpoint = "/abortabortabort";
          graceful_shutdown_wait_secs = 10;
          shutdown_wait_secs = 5;
        };
        update_config = {
          batch_size = 2;
          watch_secs = 60;
          max_per_shard_failures = 0;
          max_total_failures = 1;
          rollback_on_failure = true;
          wait_for_batch_completion = false;
          sla_aware = false;
          pulse_interval_secs = 300;
          update_strategy.batch_size = 2;
        };
        resources = { cpu = 2.5; ram = 1610612736; disk = 10 * GB; gpu = 1; };
        user = "www-data";
        names = [ "nix_init" "nix_init_final" "server" "sidecar" "flush" ];
        checker.http = { endpoint = "/ready"; expected_response = "ok"; expected_response_code = 200; };
      };

    # A cron job: Aurora's client upper-cases the policy (Python's upper()
    # maps the dotless i and the long s to I and S).
    cronJob = case
      (map
        (policy: let c = (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; cron_schedule = "*/5 * * * *"; cron_collision_policy = policy; }).config;
          in { inherit (c) cron_schedule cron_collision_policy service; })
        [ "cancel_new" "Kill_Existing" "kıll_exıstıng" "cancel_new" ])
      (map (p: { cron_schedule = "*/5 * * * *"; cron_collision_policy = p; service = false; })
        [ "CANCEL_NEW" "KILL_EXISTING" "KILL_EXISTING" "CANCEL_NEW" ]);

    # The scheduler refuses RUN_OVERLAP for cron jobs only.
    runOverlapWithoutSchedule = case
      (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; cron_collision_policy = "RUN_OVERLAP"; }).config.cron_collision_policy
      "RUN_OVERLAP";

    # Reserved by Thermos and unused, but part of Aurora's schema.
    processResources = case
      (processNamed (simpleJob [ (Process { name = "a"; cmdline = "x"; resources = Resources { cpu = 0.5; ram = 16 * MB; disk = 1; }; }) ]).config "a").resources
      { cpu = 0.5; ram = 16 * MB; disk = 1; gpu = 0; };

    knownBindingsAreAccepted = case
      (processNamed (simpleJob [ (Process { name = "a"; cmdline = allBindings; }) ]).config "a").cmdline
      allBindings;

    # Every reference Aurora's client binds by pystachio's scoping, and the
    # node bindings, in every kind of string of the job.
    scopedBindingsAreAccepted = case
      (let c = bindingsJob.config; in {
        cmdline = (processNamed c "a").cmdline;
        inherit (c) contact metadata;
        shell = c.health_check_config.health_checker.shell.shell_command;
        zk = c.announce.zk_path;
      })
      {
        cmdline = scopedBindings;
        contact = "{{role}}@example.org {{mesos.instance}} {{thermos.ports.admin}} {{&anything}}";
        metadata = [ { key = "{{cluster}}"; value = "{{key}} {{name}} {{super.role}}"; } ];
        shell = "check {{thermos.ports[health]}} {{name}} {{mesos.hostname}}";
        zk = "/aurora/{{role}}/{{environment}}/{{name}}/{{primary_port}}";
      };

    passthru = case
      { roots = attrNames withFinal.roots; jsonIsConfig = withFinal.json == toJSON withFinal.config; inherit (withFinal) name; }
      { roots = [ "a" "b" "f" ]; jsonIsConfig = true; name = "aurora-job-devcluster-www-data-devel-t.json"; };

    storeNamesAreSanitised = case
      (let j = Job (base // { cluster = "dev cluster/eu"; task = Task { processes = [ (proc "a:b") ]; inherit resources; }; });
      in { job = j.name; root = j.roots."a:b".name; })
      { job = "aurora-job-dev_cluster_eu-www-data-devel-t.json"; root = "aurora-root-dev_cluster_eu-www-data-devel-t-a_b"; };

    longNamesFitTheStore = case
      { job = stringLength longJob.name; suffix = substring (stringLength longJob.name - 5) 5 longJob.name; root = stringLength longJob.roots.${longName}.name; }
      { job = 207; suffix = ".json"; root = 207; };

    entryPoint = case
      (let root = import ../../default.nix; in [ ((root { }).aurora ? Job) ((root { pkgs = { }; }).aurora ? Service) ])
      [ true true ];
  };

  jobs = {
    inherit minimal withFinal everything plain;
    big = simpleJob [ (Process { name = "big"; cmdline = bigCmdline; }) ];
    multiline = simpleJob [ (Process { name = "lines"; cmdline = "echo one\necho 'two'\n\n  echo three\\n"; }) ];
    disabled = withoutInit { task = Task { processes = [ (proc "a") ]; inherit resources; }; };
    cron = job {
      cron_schedule = "30 2 * * 1-5";
      cron_collision_policy = "cancel_new";
      task = Task {
        processes = [ (Process { name = "a"; cmdline = "echo a"; resources = Resources { cpu = 0.5; ram = 16 * MB; disk = 16 * MB; }; }) ];
        inherit resources;
      };
    };
  };
}
