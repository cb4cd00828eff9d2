# Jobs that the library must reject. For each case the Go test forces `job`
# (its JSON) and checks that the error contains every string of `expect`:
# the job's key, the field's path and the rule.
let
  aurora = import ../default.nix;
  inherit (aurora)
    Job Service Task Process Resources order Tasks SequentialTask
    UpdateConfig HealthCheckConfig HealthCheckerConfig HttpHealthChecker
    ShellHealthChecker Announcer Logger Docker Metadata CountSlaPolicy MB GB;

  base = { cluster = "devcluster"; role = "www-data"; environment = "devel"; name = "t"; };
  key = "aurora: job devcluster/www-data/devel/t: ";
  resources = { cpu = 1; ram = 64 * MB; disk = 64 * MB; };
  proc = name: Process { inherit name; cmdline = "echo ${name}"; };
  finalProc = name: Process { inherit name; cmdline = "echo ${name}"; final = true; };

  job = attrs: Job (base // attrs);
  # A job whose task has these processes and task attributes.
  taskJob = processes: taskAttrs: job { task = Task ({ inherit processes resources; } // taskAttrs); };
  withOrder = processes: constraints: taskJob processes { inherit constraints; };

  case = job: expect: { inherit job expect; };
in
{
  # ---- unknown attributes ----
  unknownProcessAttribute = case
    (taskJob [ (Process { name = "a"; cmdLine = "echo a"; }) ] { })
    [ "${key}task.processes[0].cmdLine: unknown attribute 'cmdLine' of Process (did you mean 'cmdline'?)" ];

  unknownAttributeOfPlainSet = case
    (job { task = { processes = [ (proc "a") ]; resources = resources // { memory = 1; }; }; })
    [ "${key}task.resources.memory: unknown attribute 'memory' of Resources (known attributes: cpu, disk, gpu, ram)" ];

  unknownAttributeOfThirdProcess = case
    (taskJob [ (proc "a") (proc "b") { name = "c"; cmdline = "echo c"; maxFailures = 3; } ] { })
    [ "${key}task.processes[2].maxFailures: unknown attribute 'maxFailures' of Process (did you mean 'max_failures'?)" ];

  unknownJobAttribute = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; tasks = [ ]; })
    [ "${key}tasks: unknown attribute 'tasks' of Job" ];

  removedRestartThreshold = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; update_config = UpdateConfig { restart_threshold = 30; }; })
    [ "${key}update_config.restart_threshold: unknown attribute 'restart_threshold' of UpdateConfig (Aurora no longer accepts it" ];

  removedPortMap = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; announce = Announcer { port_map = { aurora = "http"; }; }; })
    [ "${key}announce.port_map: unknown attribute 'port_map' of Announcer" "now called 'portmap'" ];

  removedHealthCheckEndpoint = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; health_check_config = HealthCheckConfig { endpoint = "/health"; expected_response = "ok"; }; })
    [
      "${key}health_check_config.endpoint: unknown attribute 'endpoint' of HealthCheckConfig"
      "${key}health_check_config.expected_response: unknown attribute 'expected_response' of HealthCheckConfig"
      "health_checker = HealthCheckerConfig { http = HttpHealthChecker"
    ];

  unknownNixInitAttribute = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; nixInit = { substituter = "https://cache"; }; })
    [ "${key}nixInit.substituter: unknown attribute 'substituter' of nixInit" ];

  # ---- missing required fields, wrong types ----
  missingCmdline = case
    (taskJob [ (Process { name = "a"; }) ] { })
    [ "${key}task.processes[0].cmdline: missing required attribute 'cmdline' of Process" ];

  missingRole = case
    (Job (removeAttrs base [ "role" ] // { task = Task { processes = [ (proc "a") ]; inherit resources; }; }))
    [ "aurora: job devcluster/?/devel/t: role: missing required attribute 'role' of Job" ];

  missingClusterAndTask = case
    (Job (removeAttrs base [ "cluster" ]))
    [
      "aurora: job ?/www-data/devel/t: cluster: missing required attribute 'cluster' of Job"
      "aurora: job ?/www-data/devel/t: task: missing required attribute 'task' of Job"
    ];

  missingResources = case
    (job { task = Task { processes = [ (proc "a") ]; }; })
    [ "${key}task.resources: missing required attribute 'resources' of Task" ];

  ramNotANumber = case
    (job { task = Task { processes = [ (proc "a") ]; resources = resources // { ram = "1G"; }; }; })
    [ "${key}task.resources.ram: expected a size in bytes (e.g. 512 * MB), got the string \"1G\"" ];

  instancesNotAnInteger = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; instances = 1.5; })
    [ "${key}instances: expected an integer, got the float 1.5" ];

  # Aurora's client would interpolate or coerce a string here: the
  # library says so, and why it takes the number.
  priorityBinding = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; priority = "{{instances}}"; })
    [ "${key}priority: expected an integer, got the string \"{{instances}}\" (Aurora's client would take a string here, coerced or interpolated; the library takes the number itself, computed in Nix, so that the JSON holds the value Aurora uses)" ];

  # A float is shown as the JSON would write it on every Nix: exactly,
  # integral ones as integers.
  instancesNotAnIntegerFloat = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; instances = 2.0; })
    [ "${key}instances: expected an integer, got the float 2\n" ];

  instancesNotAnIntegerLongFloat = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; instances = 1.0 / 3; })
    [ "${key}instances: expected an integer, got the float 0.3333333333333333\n" ];

  floatsOutOfRange = case
    (job {
      task = Task { processes = [ (proc "a") ]; resources = resources // { cpu = 1.0e15; }; };
      health_check_config = HealthCheckConfig { timeout_secs = 1.0e-16; };
    })
    [
      "${key}task.resources.cpu: expected a number between 1e-15 and 1e15 in size, or 0, got a float outside that range"
      "${key}health_check_config.timeout_secs: expected a number between 1e-15 and 1e15 in size, or 0, got a float outside that range"
    ];

  processesNotAList = case
    (job { task = Task { processes = proc "a"; inherit resources; }; })
    [ "${key}task.processes: expected a list, got a Process" ];

  wrongConstructor = case
    (job { task = Task { processes = [ (proc "a") ]; resources = proc "r"; }; })
    [ "${key}task.resources: expected Resources, got a Process" ];

  constructorGivenAString = case
    (taskJob [ (Process "echo a") ] { })
    [ "${key}task.processes[0]: Process takes an attribute set, got the string \"echo a\"" ];

  jobGivenANumber = case
    (Job 3)
    [ "aurora: job ?/?/?/?: Job takes an attribute set, got the integer 3" ];

  badEnum = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; cron_collision_policy = "KILL"; })
    [ "${key}cron_collision_policy: expected one of 'KILL_EXISTING', 'CANCEL_NEW', 'RUN_OVERLAP' (in any case, as Aurora's client upper-cases it), got the string \"KILL\"\n" ];

  badLoggerDestination = case
    (taskJob [ (Process { name = "a"; cmdline = "x"; logger = Logger { destination = "syslog"; }; }) ] { })
    [ "${key}task.processes[0].logger.destination: expected one of 'file', 'console', 'both', 'none'" ];

  dockerWithoutImage = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; container = Docker { parameters = [ ]; }; })
    [ "${key}container.image: missing required attribute 'image' of Docker" ];

  # Aurora's client never loads these two from JSON.
  countSlaPolicy = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; sla_policy = CountSlaPolicy { count = 1; duration_secs = 30; }; })
    [ "${key}sla_policy: Aurora's client cannot load a CountSlaPolicy from JSON (its sla_policy tries CoordinatorSlaPolicy first and fails: 'Unknown schema attribute count'); use CoordinatorSlaPolicy" ];

  percentageSlaPolicy = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; sla_policy = { percentage = 99.5; duration_secs = 600; }; })
    [ "${key}sla_policy: Aurora's client cannot load a PercentageSlaPolicy from JSON (its sla_policy tries CoordinatorSlaPolicy first and fails: 'Unknown schema attribute percentage'); use CoordinatorSlaPolicy" ];

  unknownSlaPolicy = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; sla_policy = { minimum = 3; }; })
    [ "${key}sla_policy: expected CountSlaPolicy, PercentageSlaPolicy or CoordinatorSlaPolicy" ];

  healthCheckerBoth = case
    (job {
      task = Task { processes = [ (proc "a") ]; inherit resources; };
      health_check_config = HealthCheckConfig {
        health_checker = HealthCheckerConfig { http = HttpHealthChecker { }; shell = ShellHealthChecker { shell_command = "true"; }; };
      };
    })
    [ "${key}health_check_config.health_checker: a health checker is either 'http' or 'shell', not both: Aurora would accept both, and its executor would run the shell check only; nix-aurora refuses it" ];

  healthCheckerNeither = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; health_check_config = { health_checker = { }; }; })
    [ "${key}health_check_config.health_checker: a health checker needs 'http' (HttpHealthChecker) or 'shell' (ShellHealthChecker): Aurora would accept neither" "nix-aurora refuses it" ];

  sequentialTaskWithConstraints = case
    (job { task = SequentialTask { processes = [ (proc "a") (proc "b") ]; constraints = order [ "b" "a" ]; inherit resources; }; })
    [ "${key}task: SequentialTask: the task already has constraints" ];

  combineNotAList = case
    (job { task = Tasks.combine (Task { processes = [ (proc "a") ]; inherit resources; }); })
    [ "${key}task: Tasks.combine takes a list of tasks, got a Task" ];

  # ---- names ----
  badRole = case
    (Job (base // { role = "www data"; task = Task { processes = [ (proc "a") ]; inherit resources; }; }))
    [ "aurora: job devcluster/www data/devel/t: role: role \"www data\" must match ^[\\w\\-\\.]+$" ];

  badEnvironmentName = case
    (Job (base // { environment = "de/vel"; task = Task { processes = [ (proc "a") ]; inherit resources; }; }))
    [ "aurora: job devcluster/www-data/de/vel/t: environment: environment \"de/vel\" must match" ];

  environmentRejectedByScheduler = case
    (Job (base // { environment = "qa"; task = Task { processes = [ (proc "a") ]; inherit resources; }; }))
    [ "aurora: job devcluster/www-data/qa/t: environment: environment \"qa\" is rejected by the Aurora scheduler: use prod, devel, test or staging<N>" ];

  badJobName = case
    (Job (base // { name = "hello world"; task = Task { processes = [ (proc "a") ]; inherit resources; }; }))
    [ "aurora: job devcluster/www-data/devel/hello world: name: job name \"hello world\" must match ^[\\w\\-\\.]+$" ];

  badJobNameFromProcess = case
    (Job (removeAttrs base [ "name" ] // { task = Task { processes = [ (proc "hello world") ]; inherit resources; }; }))
    [ "aurora: job devcluster/www-data/devel/hello world: name: job name \"hello world\" must match" "it is the first process's name" ];

  jobNameTooLong = case
    (Job (base // { name = builtins.concatStringsSep "" (builtins.genList (_: "x") 256); task = Task { processes = [ (proc "a") ]; inherit resources; }; }))
    [ "name: job name is 256 characters long; the scheduler accepts at most 255" ];

  processNameWithSlash = case
    (taskJob [ (proc "a") (proc "b/c") ] { })
    [ "${key}task.processes[1].name: process name \"b/c\" must match ^[^./][^/]*$" ];

  processNameWithDot = case
    (taskJob [ (proc ".hidden") ] { })
    [ "${key}task.processes[0].name: process name \".hidden\" must match ^[^./][^/]*$" ];

  duplicateProcessName = case
    (taskJob [ (proc "a") (proc "b") (proc "a") ] { })
    [ "${key}task.processes[2].name: duplicate process name 'a' (also task.processes[0]): Aurora would load the job and keep only the last process of that name; nix-aurora refuses it" ];

  reservedNixInit = case
    (taskJob [ (proc "a") (proc "nix_init") ] { })
    [ "${key}task.processes[1].name: duplicate process name 'nix_init': the name is reserved for the init process nix-aurora adds" ];

  reservedNixInitFinal = case
    (taskJob [ (proc "nix_init_final") (finalProc "f") ] { })
    [ "${key}task.processes[0].name: duplicate process name 'nix_init_final'" ];

  noProcesses = case
    (taskJob [ ] { })
    [ "${key}task.processes: a task needs at least one process: Aurora would load an empty list, but the task would run nothing; nix-aurora refuses it" ];

  # ---- resources ----
  zeroCpu = case
    (job { task = Task { processes = [ (proc "a") ]; resources = resources // { cpu = 0; }; }; })
    [ "${key}task.resources.cpu: cpu must be greater than 0, got 0" ];

  negativeCpu = case
    (job { task = Task { processes = [ (proc "a") ]; resources = resources // { cpu = -0.5; }; }; })
    [ "${key}task.resources.cpu: cpu must be greater than 0, got -0.5" ];

  ramUnderOneMiB = case
    (job { task = Task { processes = [ (proc "a") ]; resources = resources // { ram = 1000; }; }; })
    [ "${key}task.resources.ram: ram must be at least 1 MiB (1048576 bytes), got 1000 bytes" ];

  diskUnderOneMiB = case
    (job { task = Task { processes = [ (proc "a") ]; resources = resources // { disk = 0.5 * MB; }; }; })
    [ "${key}task.resources.disk: disk must be at least 1 MiB (1048576 bytes), got 524288 bytes" ];

  # ---- update and health check rules ----
  maxTotalFailuresNotBelowInstances = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; instances = 2; update_config = UpdateConfig { max_total_failures = 2; }; })
    [ "${key}update_config.max_total_failures: must be less than instances (2), got 2: use at most 1" ];

  noInstances = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; instances = 0; })
    [ "${key}instances: must be at least 1, got 0" ];

  zeroBatchSize = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; update_config = { batch_size = 0; }; })
    [ "${key}update_config.batch_size: must be at least 1, got 0: 'aurora job create' does not read update_config and would accept it, but 'aurora update start' refuses it (\"Batch size should be greater than 0\")" ];

  negativeWatchSecs = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; update_config = UpdateConfig { watch_secs = -1; }; })
    [ "${key}update_config.watch_secs: must not be negative, got -1" ];

  negativeHealthCheckIntervals = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; health_check_config = HealthCheckConfig { initial_interval_secs = -5; interval_secs = -0.5; }; })
    [
      "${key}health_check_config.initial_interval_secs: must not be negative, got -5"
      "${key}health_check_config.interval_secs: must not be negative, got -0.5"
    ];

  # Aurora's client refuses these; the library says the same.
  negativeHealthCheckCounts = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; health_check_config = HealthCheckConfig { max_consecutive_failures = -1; min_consecutive_successes = -1; }; })
    [
      "${key}health_check_config.max_consecutive_failures: must not be negative, got -1"
      "${key}health_check_config.min_consecutive_successes: must not be negative, got -1"
    ];

  # Aurora does not check these: the message says so.
  negativeTimeoutAndGpu = case
    (job { task = Task { processes = [ (proc "a") ]; resources = resources // { gpu = -1; }; }; health_check_config = HealthCheckConfig { timeout_secs = -0.5; }; })
    [
      "${key}task.resources.gpu: must not be negative, got -1: Aurora's client and scheduler do not check it, but nix-aurora refuses it"
      "${key}health_check_config.timeout_secs: must not be negative, got -0.5: Aurora's client does not check it and would accept it, but nix-aurora refuses it"
    ];

  dedicatedNeedsFailureBudget = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; instances = 100; constraints = { dedicated = "www-data/web"; }; })
    [ "${key}update_config.max_total_failures: a dedicated job with 100 instances must tolerate at least 2% of them failing: use at least 2" ];

  staticPortNeedsDedicated = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; announce = Announcer { portmap = { aurora = "http"; https = "443"; }; }; })
    [ "${key}announce.portmap.https: static port 443 needs a dedicated job (constraints.dedicated)" ];

  # ---- cron jobs ----
  serviceWithCronSchedule = case
    (Service (base // { task = Task { processes = [ (proc "a") ]; inherit resources; }; cron_schedule = "*/5 * * * *"; }))
    [ "${key}cron_schedule: a service (service = true) cannot have a cron schedule: the Aurora scheduler refuses it (\"A service task may not be run on a cron schedule\")" ];

  emptyCronSchedule = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; cron_schedule = ""; })
    [ "${key}cron_schedule: must not be empty" "(\"Job has an empty cron schedule.\")" ];

  cronRunOverlap = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; cron_schedule = "0 * * * *"; cron_collision_policy = "run_overlap"; })
    [ "${key}cron_collision_policy: RUN_OVERLAP is accepted by Aurora's client, but the scheduler refuses a cron job with it (\"The RUN_OVERLAP collision policy has been removed (AURORA-38).\")" ];

  cronCollisionPolicyBinding = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; cron_schedule = "0 * * * *"; cron_collision_policy = "{{policy}}"; })
    [ "${key}cron_collision_policy: expected one of 'KILL_EXISTING', 'CANCEL_NEW', 'RUN_OVERLAP' (in any case, as Aurora's client upper-cases it), got the string \"{{policy}}\" (Aurora would accept a binding that interpolates to a policy name" ];

  # ---- bindings (every string of the job; Aurora's messages) ----
  unknownBinding = case
    (taskJob [ (proc "a") (Process { name = "b"; cmdline = "run --port {{thermos.ports[http]}} --shard {{mesos.instance}} --dc {{datacenter}}"; }) ] { })
    [ "${key}task.processes[1].cmdline: unknown binding '{{datacenter}}': Aurora refuses it (\"Unexpected unbound refs: {{datacenter}}. Make sure you are not nesting template variables.\")" ];

  unknownBindingsOutsideTheTask = case
    (job {
      task = Task { processes = [ (proc "a") ]; inherit resources; };
      contact = "{{owner}}@example.org";
      metadata = [ (Metadata { key = "team"; value = "{{team}}"; }) ];
      constraints = { "{{attr}}" = "limit:1"; };
      announce = Announcer { zk_path = "/aurora/{{zone}}"; };
      health_check_config = HealthCheckConfig { health_checker = HealthCheckerConfig { shell = ShellHealthChecker { shell_command = "check --dc {{datacenter}}"; }; }; };
    })
    [
      "${key}contact: unknown binding '{{owner}}': Aurora refuses it (\"Config contains unbound variables: {{owner}}\")"
      "${key}metadata[0].value: unknown binding '{{team}}'"
      "${key}constraints.{{attr}}: unknown binding '{{attr}}'"
      "${key}announce.zk_path: unknown binding '{{zone}}'"
      "${key}health_check_config.health_checker.shell.shell_command: unknown binding '{{datacenter}}': Aurora refuses it (\"Config contains unbound variables: {{datacenter}}\")"
    ];

  # The JSON's task has nix_init, a and b: index 3 and -4 are out of range.
  bindingsOutOfScope = case
    (job {
      task = Task {
        processes = [ (Process { name = "a"; cmdline = "{{processes[3].name}} {{processes[-4].name}} {{container.docker.image}} {{self}} {{thermos}} {{thermos.ports}} {{thermos.ports[http].x}} {{super.super.super.role}}"; }) (proc "b") ];
        inherit resources;
      };
      container = Docker { image = "debian:12"; };
      contact = "{{super}}";
    })
    (map (r: "${key}task.processes[0].cmdline: unknown binding '${r}'") [
      "{{processes[3].name}}" "{{processes[-4].name}}" "{{container.docker.image}}" "{{self}}"
      "{{thermos}}" "{{thermos.ports}}" "{{thermos.ports[http].x}}" "{{super.super.super.role}}"
    ] ++ [ "${key}contact: unknown binding '{{super}}'" ]);

  aliasBindingInTask = case
    (taskJob [ (Process { name = "a"; cmdline = "{{&mesos.role}} {{&nope}}"; }) ] { })
    [
      "${key}task.processes[0].cmdline: unknown binding '{{&mesos.role}}' (Aurora's client leaves it as {{mesos.role}}, which the task's check binds without the client's standard bindings): Aurora refuses it (\"Unexpected unbound refs: {{mesos.role}}."
      "unknown binding '{{&nope}}'"
    ];

  badPortSpecification = case
    (taskJob [ (Process { name = "a"; cmdline = "serve --port {{thermos.ports.http}}"; }) ] { })
    [ "${key}task.processes[0].cmdline: '{{thermos.ports.http}}': a port is written {{thermos.ports[NAME]}}; Aurora refuses the task (\"Bad port specification\")" ];

  unparsableReference = case
    (taskJob [ (Process { name = "a"; cmdline = "awk '{{print $1}}' {{ name }}"; }) ] { })
    [
      "${key}task.processes[0].cmdline: '{{print $1}}' is not a reference pystachio can parse"
      "${key}task.processes[0].cmdline: '{{ name }}' is not a reference pystachio can parse"
    ];

  nestedBindings = case
    (taskJob [ (Process { name = "a"; cmdline = "echo {{processes[{{mesos.instance}}].name}}"; }) ] { })
    [ "${key}task.processes[0].cmdline: nested references '{{processes[{{mesos.instance}}].name}}': Aurora binds the inner one only, then refuses the outer one (\"Unexpected unbound refs: ... Make sure you are not nesting template variables.\")" ];

  unknownBindingInNixInit = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; nixInit.extraArgs = [ "--cache-dir={{sandbox}}" ]; })
    [ "${key}nixInit: unknown binding '{{sandbox}}'" ];

  negativeNixInitMaxFailures = case
    (job { task = Task { processes = [ (proc "a") ]; inherit resources; }; nixInit.maxFailures = -1; })
    [ "${key}nixInit.maxFailures: must not be negative (0 retries forever), got -1" ];

  # ---- ordering ----
  orderMixesKnownAndUnknown = case
    (withOrder [ (proc "a") (proc "b") ] (order [ "a" "c" ]))
    [ "${key}task.constraints[0].order: names unknown process 'c' (the task's processes are 'nix_init', 'a', 'b')\n" ];

  orderOnlyUnknown = case
    (withOrder [ (proc "a") (proc "b") ] (order [ "a" "b" ] ++ order [ "x" "y" ]))
    [ "${key}task.constraints[1].order: names unknown processes 'x', 'y' (the task's processes are 'nix_init', 'a', 'b'): Thermos would ignore an order that names no process of the task, but nix-aurora refuses it" ];

  orderMixesFinalAndRegular = case
    (withOrder [ (proc "a") (finalProc "f") ] (order [ "a" "f" ]))
    [ "${key}task.constraints[0].order: mixes final process 'f' with regular process 'a'" ];

  orderEmpty = case
    (withOrder [ (proc "a") ] (order [ ]))
    [ "${key}task.constraints[0].order: an order constraint needs at least one process name" ];

  orderCycle = case
    (withOrder [ (proc "a") (proc "b") (proc "c") ] (order [ "a" "b" "c" ] ++ order [ "c" "a" ]))
    [ "${key}task.constraints: the order constraints form a cycle through 'a', 'b', 'c'" ];

  orderSelfCycle = case
    (withOrder [ (proc "a") (proc "b") ] (order [ "a" "b" "a" ]))
    [ "${key}task.constraints: the order constraints form a cycle through 'a', 'b'" ];

  orderCycleThroughNixInit = case
    (withOrder [ (proc "a") ] (order [ "a" "nix_init" ]))
    [ "${key}task.constraints: the order constraints form a cycle through 'nix_init', 'a'" ];

  orderFinalAfterNixInit = case
    (withOrder [ (proc "a") (finalProc "f") ] (order [ "nix_init" "f" ]))
    [ "${key}task.constraints[0].order: mixes final process 'f' with regular process 'nix_init'" ];

  orderAfterDaemon = case
    (withOrder [ (Process { name = "d"; cmdline = "x"; daemon = true; }) (proc "b") ] (order [ "d" "b" ]))
    [ "${key}task.constraints[0].order: orders 'b' after daemon process 'd'" ];

  orderNonEphemeralAfterEphemeral = case
    (withOrder [ (Process { name = "e"; cmdline = "x"; ephemeral = true; }) (proc "b") ] (order [ "e" "b" ]))
    [ "${key}task.constraints[0].order: orders non-ephemeral process 'b' after ephemeral process 'e'" ];

  orderByConcat = case
    (job {
      task = Tasks.concat [
        (Task { processes = [ (proc "a") ]; inherit resources; })
        (Task { processes = [ (finalProc "f") ]; inherit resources; })
      ];
    })
    [ "mixes final process 'f' with regular process 'a'" ];

  # ---- several problems are reported together ----
  severalProblems = case
    (taskJob [ (Process { name = "a"; cmdline = "x"; max_failure = 2; }) (Process { name = "b"; command = "y"; }) ] { })
    [
      "${key}task.processes[0].max_failure: unknown attribute 'max_failure' of Process"
      "${key}task.processes[1].command: unknown attribute 'command' of Process"
      "${key}task.processes[1].cmdline: missing required attribute 'cmdline' of Process"
    ];

  serviceKeepsTheKey = case
    (Service (base // { task = Task { processes = [ (proc "a") ]; resources = resources // { cpu = 0; }; }; }))
    [ "${key}task.resources.cpu: cpu must be greater than 0" ];
}
