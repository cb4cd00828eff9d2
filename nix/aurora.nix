# nix-aurora: Apache Aurora jobs as Nix expressions.
#
# Only builtins are used, so the library works with or without nixpkgs.
#
# The constructors (Process, Task, Resources, ...) are named after Aurora's
# Python DSL and fill in Aurora's defaults. They never throw: an unknown
# attribute or a wrong argument is recorded in the value (keys starting with
# `_`, which never reach the JSON), because only Job knows the job's name and
# each field's path, which is what makes an error message useful. Wherever a
# constructor is expected a plain attribute set is accepted too, and gets the
# same defaults and checks.
#
# Job validates the whole tree, adds the nix_init processes that realise each
# process's closure on the node, and returns a derivation whose output is the
# job's JSON for `aurora job create --read-json`, byte for byte the string in
# its `json` attribute (no trailing newline). Every error is thrown as
#   aurora: job CLUSTER/ROLE/ENV/NAME: FIELD.PATH: what is wrong
# one line per problem.
let
  inherit (builtins)
    any attrNames concatLists concatMap concatStringsSep currentSystem
    derivation elem elemAt filter floor foldl' genList hasAttr head
    intersectAttrs isAttrs isBool isFloat isFunction isInt isList isPath
    isString length listToAttrs mapAttrs match removeAttrs replaceStrings
    split stringLength substring tail toJSON typeOf all;

  # ---- Small helpers (nixpkgs' lib is not available) ----

  optional = cond: x: if cond then [ x ] else [ ];
  imap0 = f: xs: genList (i: f i (elemAt xs i)) (length xs);
  hasPrefix = prefix: s: substring 0 (stringLength prefix) s == prefix;
  unique = foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];
  filterAttrs = pred: set:
    listToAttrs (concatMap
      (name: optional (pred name set.${name}) { inherit name; value = set.${name}; })
      (attrNames set));
  isDerivation = v: isAttrs v && (v.type or null) == "derivation";
  isNumber = v: isInt v || isFloat v;
  max = a: b: if a > b then a else b;
  abs = x: if x < 0 then 0 - x else x;
  quoteList = names: concatStringsSep ", " (map (n: "'${toString n}'") names);
  plural = n: word: if n == 1 then word else "${word}es";

  upperChars = [ "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" ];
  lowerChars = [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ];
  # Spelling-insensitive form of an attribute name, to suggest the right one
  # for `cmdLine`, `maxFailures`, `max-failures`...
  canonical = s: replaceStrings ([ "_" "-" ] ++ upperChars) ([ "" "" ] ++ lowerChars) s;

  # ---- Numbers ----
  #
  # Nix 2.8's toJSON prints a float with 6 significant digits (0.1234567
  # becomes 0.123457) and an integral one as an integer; since 2.12 it
  # prints the shortest text that reads back as the same double, and `2.0`.
  # So the library writes the JSON's numbers itself (jsonText): integers
  # and integral floats as integers, other floats as a decimal that reads
  # back as exactly the author's double, computed with integer and float
  # arithmetic that every version does alike (toString cannot help: it
  # prints "%f"). The same JSON comes out of every Nix.

  # 10^n as a float, exact for n <= 22 (every factor and product is).
  pow10 = n: foldl' (acc: _: acc * 10.0) 1.0 (genList (i: i) n);
  # 2^n as an integer, for 0 <= n <= 62.
  pow2 = n: foldl' (acc: _: acc * 2) 1 (genList (i: i) n);
  # Below 1e-15 and from 1e15 on, floats are refused: this range keeps
  # every step below exact, and integral floats within int64.
  inNumberRange = a: a == 0 || (a >= 1.0e-15 && a < 1.0e15);

  # The decimal text of a non-integral float in range. a = M / 2^s
  # exactly (M < 2^53, found by doublings, which are exact); its decimal
  # digits come from exact integer long division (the remainder kept as
  # hi * 2^31 + lo, so that nothing overflows 64 bits). The text is the
  # shortest correctly rounded prefix, of n <= 16 significant digits, that
  # reads back as a (checked with one correctly rounded float operation,
  # which is what a JSON parser computes), else 17 digits, which always do.
  floatText = v:
    let
      a = abs v;
      toMantissa = x: k: if x >= 4503599627370496.0 then { m = floor x; s = k; } else toMantissa (x * 2.0) (k + 1);
      dec = toMantissa a 0;
      M = dec.m;
      s0 = dec.s;
      B = 2147483648; # 2^31
      I = if s0 <= 62 then M / pow2 s0 else 0;
      r0 = if s0 <= 62 then M - I * pow2 s0 else M;
      # One fraction digit: 10 * r / 2^s = 5 * r / 2^(s-1).
      step = st:
        let
          lo5 = st.lo * 5;
          hi5 = st.hi * 5 + lo5 / B;
          lo = lo5 - lo5 / B * B;
          t = st.s - 1;
          big = t - 31;
          d = if t >= 31 then (if big > 62 then 0 else hi5 / pow2 big) else (hi5 * B + lo) / pow2 t;
        in
        # s = 0: the expansion has ended (the remainder is 0).
        if st.s == 0 then st // { digit = 0; }
        else if t >= 31 then { digit = d; hi = if big > 62 then hi5 else hi5 - d * pow2 big; inherit lo; s = t; }
        else { digit = d; hi = 0; lo = hi5 * B + lo - d * pow2 t; s = t; };
      # 40 digits: up to 15 zeros after the point, 17 significant digits
      # and the ones that decide the rounding.
      run = foldl' (acc: _: let n = step acc.st; in { st = n; digits = acc.digits ++ [ n.digit ]; })
        { st = { hi = r0 / B; lo = r0 - r0 / B * B; s = s0; }; digits = [ ]; } (genList (i: i) 40);
      intDigits = if I == 0 then [ ] else map (i: fromDecimal (substring i 1 (toString I))) (genList (i: i) (stringLength (toString I)));
      digits = intDigits ++ run.digits;
      restNonZero = run.st.hi != 0 || run.st.lo != 0;
      point = length intDigits; # digits before the decimal point
      leadingZeros = n: if elemAt digits n == 0 then leadingZeros (n + 1) else n;
      z0 = if I > 0 then 0 else leadingZeros 0;
      # The first n significant digits, correctly rounded (half to even).
      rounded = n:
        let
          prefix = foldl' (acc: i: acc * 10 + elemAt digits (z0 + i)) 0 (genList (i: i) n);
          next = elemAt digits (z0 + n);
          sticky = restNonZero || any (d: d != 0) (genList (i: elemAt digits (z0 + n + 1 + i)) (length digits - z0 - n - 1));
          up = next > 5 || (next == 5 && (sticky || prefix - prefix / 2 * 2 == 1));
        in { N = if up then prefix + 1 else prefix; E = point - z0 - n; };
      readsBack = c:
        c.N < 9007199254740992 && c.E <= 22 && c.E >= -22
        && (if c.E >= 0 then (c.N + 0.0) * pow10 c.E else (c.N + 0.0) / pow10 (0 - c.E)) == a;
      pick = n: let c = rounded n; in if n >= 17 || readsBack c then c else pick (n + 1);
      best = pick 1;
      # Drop trailing zeros, then place the point.
      trim = c: if c.E < 0 && c.N - c.N / 10 * 10 == 0 then trim { N = c.N / 10; E = c.E + 1; } else c;
      t = trim best;
      ds = toString t.N;
      len = stringLength ds;
      zeros = n: concatStringsSep "" (genList (_: "0") n);
      text =
        if t.E >= 0 then ds + zeros t.E
        else if len > 0 - t.E then substring 0 (len + t.E) ds + "." + substring (len + t.E) (0 - t.E) ds
        else "0." + zeros (0 - t.E - len) + ds;
    in
    (if v < 0 then "-" else "") + text;

  # A number as the JSON writes it: integers and integral floats as
  # integers, other floats exactly (floatText). Only for numbers in range.
  numberText = v:
    if isInt v then toJSON v
    else if floor (abs v) == abs v then toJSON (if v < 0 then 0 - floor (abs v) else floor v)
    else floatText v;

  # How a number appears in messages: as the JSON would write it.
  showNumber = v:
    if isInt v || inNumberRange (abs v) then numberText v
    else "out of range";

  # builtins.toJSON, byte for byte, but with numberText for floats.
  jsonText = v:
    if isFloat v then numberText v
    else if isAttrs v then "{" + concatStringsSep "," (map (k: "${toJSON k}:${jsonText v.${k}}") (attrNames v)) + "}"
    else if isList v then "[" + concatStringsSep "," (map jsonText v) + "]"
    else toJSON v;

  # Human description of a value, for "expected X, got Y".
  describe = v:
    if isString v then
      "the string ${toJSON (if stringLength v > 60 then substring 0 57 v + "..." else v)}"
    else if isInt v then "the integer ${toJSON v}"
    else if isFloat v then "the float ${showNumber v}"
    else if isBool v then (if v then "true" else "false")
    else if v == null then "null"
    else if isList v then "a list"
    else if isPath v then "the path ${toString v}"
    else if isFunction v then "a function (did you forget an argument?)"
    else if isDerivation v then "a derivation"
    else if isAttrs v && isString (v._type or null) && hasPrefix "aurora." v._type then
      "a ${substring 7 (stringLength v._type) v._type}"
    else if isAttrs v then "an attribute set"
    else typeOf v;

  # Store path names allow only these characters and at most 211 of them,
  # and the derivation's own name has ".drv" appended, hence 207.
  storeName = s:
    substring 0 207 (concatStringsSep "_" (filter isString (split "[^A-Za-z0-9+._?=-]" s)));

  # Quoting for the `/bin/bash -c` that Thermos runs every cmdline with.
  shellQuote = s: "'${replaceStrings [ "'" ] [ "'\\''" ] s}'";

  # The cluster-wide profile's nix-init, which generated cmdlines call.
  defaultNixInit = "/nix/var/nix/profiles/default/bin/nix-init";

  # Units, as in Aurora (powers of 1024, integers).
  B = 1;
  KB = 1024 * B;
  MB = 1024 * KB;
  GB = 1024 * MB;
  TB = 1024 * GB;

  # ---- Normalisation: check a value against the schema, fill defaults ----
  #
  # A type is a function `path: value: { value; errors; }`; errors are
  # `{ path; msg; }` and become one line each of the thrown message.

  ok = value: { inherit value; errors = [ ]; };
  fail = path: msg: { value = null; errors = [ { inherit path msg; } ]; };
  at = path: key: if path == "" then key else "${path}.${key}";
  atIndex = path: i: "${path}[${toString i}]";
  # Aurora's client would coerce a string ("3") or interpolate a binding
  # ("{{instances}}") in a number's place; the library takes the number
  # itself, so that the JSON holds the value Aurora uses and Nix computes.
  notNumber = v:
    if isString v then " (Aurora's client would take a string here, coerced or interpolated; the library takes the number itself, computed in Nix, so that the JSON holds the value Aurora uses)"
    else "";

  types = rec {
    string = path: v:
      if isString v then ok v
      else fail path ("expected a string, got ${describe v}"
        + (if isPath v || isDerivation v then " (interpolate it: \"\${...}\")" else ""));

    int = path: v:
      if isInt v then ok v else fail path "expected an integer, got ${describe v}${notNumber v}";

    # Sizes are bytes and must reach the JSON as integers: Nix prints floats
    # with 6 significant digits (1024 * 1024 * 1.0 becomes 1.04858e+06).
    size = path: v:
      if isInt v then ok v
      else if isFloat v then ok (floor v)
      else fail path "expected a size in bytes (e.g. 512 * MB), got ${describe v}";

    # Integers stay, integral floats become integers, other floats reach
    # the JSON exactly (see floatText), on every version of Nix.
    float = path: v:
      if isInt v then ok v
      else if !isFloat v then fail path "expected a number, got ${describe v}${notNumber v}"
      else if !inNumberRange (abs v) then
        fail path "expected a number between 1e-15 and 1e15 in size, or 0, got a float outside that range"
      else if floor (abs v) == abs v then ok (if v < 0 then 0 - floor (abs v) else floor v)
      else ok v;

    bool = path: v:
      if isBool v then ok v else fail path "expected true or false, got ${describe v}";

    enum = values: path: v:
      if isString v && elem v values then ok v
      else fail path "expected one of ${quoteList values}, got ${describe v}";

    # Aurora's client looks the policy up with `value.upper()` in the
    # thrift enum, so any case loads; the JSON carries the name it resolves
    # to. Python's upper() maps two non-ASCII letters to ASCII ones, and
    # they are mapped here too.
    cronCollisionPolicy = path: v:
      let
        names = [ "KILL_EXISTING" "CANCEL_NEW" "RUN_OVERLAP" ];
        upper = s: replaceStrings ([ "ı" "ſ" ] ++ lowerChars) ([ "I" "S" ] ++ upperChars) s;
      in
      if isString v && elem (upper v) names then ok (upper v)
      else fail path ("expected one of ${quoteList names} (in any case, as Aurora's client upper-cases it), got ${describe v}"
        + (if isString v && length (split "\\{\\{" v) > 1
           then " (Aurora would accept a binding that interpolates to a policy name; nix-aurora needs the name itself, to check it at evaluation)"
           else ""));

    listOf = elemType: path: v:
      if !isList v then fail path "expected a list, got ${describe v}"
      else
        let results = imap0 (i: x: elemType (atIndex path i) x) v;
        in {
          value = map (r: r.value) results;
          errors = concatMap (r: r.errors) results;
        };

    # Aurora's Map(String, String).
    stringMap = path: v:
      if !isAttrs v || isDerivation v || v ? _type then
        fail path "expected an attribute set of strings, got ${describe v}"
      else
        let results = mapAttrs (k: x: string (at path k) x) v;
        in {
          value = mapAttrs (k: r: r.value) results;
          errors = concatMap (k: results.${k}.errors) (attrNames results);
        };

    struct = name: path: v: normalize name path v;

    # Job.container: `Container { docker = Docker {...}; }`, or a Docker
    # given directly, which is wrapped: in JSON only the docker form loads.
    container = path: v:
      if isAttrs v && ((v._type or null) == "aurora.Docker"
        || (!(v ? _type) && !(v ? docker) && v ? image))
      then
        let r = normalize "Docker" path v;
        in { value = { docker = r.value; }; inherit (r) errors; }
      else normalize "Container" path v;

    # Job.sla_policy: one of three structs, told apart by tag or by key.
    slaPolicy = path: v:
      let
        kinds = [ "CountSlaPolicy" "PercentageSlaPolicy" "CoordinatorSlaPolicy" ];
        keyOf = { CountSlaPolicy = "count"; PercentageSlaPolicy = "percentage"; CoordinatorSlaPolicy = "coordinator_url"; };
        matching =
          if !isAttrs v || isDerivation v then [ ]
          else if v ? _type then filter (k: v._type == "aurora.${k}") kinds
          else filter (k: v ? ${keyOf.${k}}) kinds;
      in
      if matching == [ ] then
        fail path "expected CountSlaPolicy, PercentageSlaPolicy or CoordinatorSlaPolicy, got ${describe v}"
      # Aurora's schema has all three, but its client never loads the first
      # two from JSON: sla_policy is a pystachio Choice that tries
      # CoordinatorSlaPolicy first, and the unknown attribute's error is not
      # caught.
      else if head matching != "CoordinatorSlaPolicy" then
        fail path "Aurora's client cannot load a ${head matching} from JSON (its sla_policy tries CoordinatorSlaPolicy first and fails: 'Unknown schema attribute ${keyOf.${head matching}}'); use CoordinatorSlaPolicy"
      else normalize (head matching) path v;
  };

  # Field specifications.
  req = type: { inherit type; required = true; };
  opt = type: { inherit type; required = false; };
  def = type: default: { inherit type default; required = false; };

  # Aurora's schema (config/schema/base.py and thermos/config/schema_base.py,
  # as of Aurora 0.22). `removed` explains attributes older Aurora accepted.
  schemas = with types; {
    Job = {
      fields = {
        name = opt string; # defaults to the task's name, filled in by Job
        role = req string;
        contact = opt string;
        cluster = req string;
        environment = req string;
        instances = def int 1;
        task = req (struct "Task");
        announce = opt (struct "Announcer");
        tier = opt string;
        cron_schedule = opt string; # a cron job: `aurora cron schedule`, not `create`
        cron_collision_policy = def cronCollisionPolicy "KILL_EXISTING";
        update_config = def (struct "UpdateConfig") (construct "UpdateConfig" { });
        constraints = opt stringMap;
        metadata = def (listOf (struct "Metadata")) [ ];
        service = def bool false;
        max_task_failures = def int 1;
        production = def bool false;
        priority = def int 0;
        health_check_config = def (struct "HealthCheckConfig") (construct "HealthCheckConfig" { });
        lifecycle = def (struct "LifecycleConfig")
          (construct "LifecycleConfig" { http = construct "HttpLifecycleConfig" { }; });
        task_links = opt stringMap;
        executor_config = def (struct "ExecutorConfig") (construct "ExecutorConfig" { });
        enable_hooks = def bool false;
        partition_policy = opt (struct "PartitionPolicy");
        sla_policy = opt slaPolicy;
        container = opt container;
      };
    };

    Task = {
      fields = {
        name = opt string; # defaults to the first process's name, filled in by Job
        processes = req (listOf (struct "Process"));
        constraints = def (listOf (struct "Constraint")) [ ];
        resources = req (struct "Resources");
        max_failures = def int 1;
        max_concurrency = def int 0;
        finalization_wait = def int 30;
        user = opt string;
      };
    };

    Process = {
      fields = {
        cmdline = req string;
        name = req string;
        max_failures = def int 1;
        daemon = def bool false;
        ephemeral = def bool false;
        min_duration = def int 5;
        final = def bool false;
        logger = opt (struct "Logger");
        # Reserved by Thermos, unused; Aurora's schema has it, so it loads.
        resources = opt (struct "Resources");
      };
    };

    Resources = {
      fields = {
        cpu = req float;
        ram = req size;
        disk = req size;
        gpu = def int 0;
      };
    };

    Constraint.fields.order = req (listOf string);

    Logger = {
      fields = {
        destination = def (enum [ "file" "console" "both" "none" ]) "file";
        mode = def (enum [ "standard" "rotate" ]) "standard";
        rotate = opt (struct "RotatePolicy");
      };
      # Rotation needs its sizes; emit them rather than rely on the executor.
      finish = v:
        if v.mode == "rotate" && !(v ? rotate)
        then v // { rotate = (normalize "RotatePolicy" "" { }).value; }
        else v;
    };

    RotatePolicy.fields = {
      log_size = def size (100 * MB);
      backups = def int 5;
    };

    UpdateConfig = {
      fields = {
        batch_size = def int 1;
        watch_secs = def int 45;
        max_per_shard_failures = def int 0;
        max_total_failures = def int 0;
        rollback_on_failure = def bool true;
        wait_for_batch_completion = def bool false;
        pulse_interval_secs = opt int;
        sla_aware = def bool false;
        update_strategy = opt (struct "QueueUpdateStrategy");
      };
      removed.restart_threshold = "Aurora no longer accepts it: remove it";
    };

    # The only update_strategy form that loads from JSON.
    QueueUpdateStrategy.fields.batch_size = def int 1;

    HealthCheckConfig = {
      fields = {
        health_checker = def (struct "HealthCheckerConfig")
          (construct "HealthCheckerConfig" { http = construct "HttpHealthChecker" { }; });
        initial_interval_secs = def float 15.0;
        interval_secs = def float 10.0;
        timeout_secs = def float 1.0;
        max_consecutive_failures = def int 0;
        min_consecutive_successes = def int 1;
      };
      removed =
        let
          http = "Aurora no longer accepts it here: write health_checker = HealthCheckerConfig { http = HttpHealthChecker { ... }; }";
          shell = "Aurora no longer accepts it here: write health_checker = HealthCheckerConfig { shell = ShellHealthChecker { shell_command = ...; }; }";
        in {
          endpoint = http;
          expected_response = http;
          expected_response_code = http;
          shell_command = shell;
          type = "Aurora no longer accepts it: the kind of check is the attribute set in health_checker (http or shell)";
        };
    };

    HealthCheckerConfig = {
      fields = {
        http = opt (struct "HttpHealthChecker");
        shell = opt (struct "ShellHealthChecker");
      };
      check = path: v:
        let n = length (filter (k: v ? ${k}) [ "http" "shell" ]);
        in optional (n != 1) {
          inherit path;
          msg =
            if n == 0 then "a health checker needs 'http' (HttpHealthChecker) or 'shell' (ShellHealthChecker): Aurora would accept neither, and its executor would then run an HTTP check with no endpoint on the health port; nix-aurora refuses it (write http = HttpHealthChecker { } for Aurora's default check)"
            else "a health checker is either 'http' or 'shell', not both: Aurora would accept both, and its executor would run the shell check only; nix-aurora refuses it, as the http check would be ignored without a word (drop one)";
        };
    };

    HttpHealthChecker.fields = {
      endpoint = def string "/health";
      expected_response = def string "ok";
      expected_response_code = def int 0;
    };

    ShellHealthChecker.fields.shell_command = req string;

    LifecycleConfig.fields.http = opt (struct "HttpLifecycleConfig");

    HttpLifecycleConfig.fields = {
      port = def string "health";
      graceful_shutdown_endpoint = def string "/quitquitquit";
      shutdown_endpoint = def string "/abortabortabort";
      graceful_shutdown_wait_secs = def int 5;
      shutdown_wait_secs = def int 5;
    };

    Announcer = {
      fields = {
        primary_port = def string "http";
        portmap = opt stringMap; # defaults to { aurora = primary_port; }
        zk_path = opt string;
      };
      # Aurora's default is { aurora = "{{primary_port}}"; }: emit the value.
      finish = v: v // { portmap = v.portmap or { aurora = v.primary_port; }; };
      removed.port_map = "Aurora no longer accepts it: the attribute is now called 'portmap'";
    };

    ExecutorConfig.fields = {
      name = def string "AuroraExecutor";
      data = def string "";
    };

    PartitionPolicy.fields = {
      reschedule = def bool true;
      delay_secs = def int 0;
    };

    Metadata.fields = {
      key = req string;
      value = req string;
    };

    Container.fields.docker = req (struct "Docker");

    Docker.fields = {
      image = req string;
      parameters = def (listOf (struct "Parameter")) [ ];
    };

    Parameter.fields = {
      name = req string;
      value = req string;
    };

    CountSlaPolicy.fields = {
      count = req int;
      duration_secs = req int;
    };

    PercentageSlaPolicy.fields = {
      percentage = req float;
      duration_secs = req int;
    };

    CoordinatorSlaPolicy.fields = {
      coordinator_url = req string;
      status_key = def string "drain";
    };

    # Job's `nixInit`: how the init processes run. Not an Aurora field.
    NixInit = {
      label = "nixInit";
      fields = {
        enable = def bool true;
        command = def string defaultNixInit;
        substituters = def (listOf string) [ ];
        trustedPublicKeys = def (listOf string) [ ];
        extraArgs = def (listOf string) [ ];
        maxFailures = def int 1;
      };
      check = path: v:
        optional (v.command == "") { path = at path "command"; msg = "must not be empty"; }
        ++ optional (v.maxFailures < 0) { path = at path "maxFailures"; msg = "must not be negative (0 retries forever), got ${toJSON v.maxFailures}"; };
    };
  };

  labelOf = name: schemas.${name}.label or name;

  unknownMessage = name: key:
    let
      known = attrNames schemas.${name}.fields;
      similar = filter (f: canonical f == canonical key) known;
      hint =
        schemas.${name}.removed.${key} or (
          if similar != [ ] then "did you mean '${head similar}'?"
          else "known attributes: ${concatStringsSep ", " known}");
    in
    "unknown attribute '${key}' of ${labelOf name} (${hint})";

  # Check `v` against schema `name` at `path`; fill in defaults.
  normalize = name: path: v:
    let
      schema = schemas.${name};
      fields = schema.fields;
      label = labelOf name;
    in
    if !isAttrs v || isDerivation v then
      fail path "expected ${label} (an attribute set), got ${describe v}"
    else if v ? _type && v._type != "aurora.${name}" then
      fail path "expected ${label}, got ${describe v}"
    else if v._invalid or false then
      { value = null; errors = map (msg: { inherit path msg; }) v._errors; }
    else
      let
        # null means "not set", as in most Nix code; it never reaches the JSON.
        given = filterAttrs (k: x: !hasPrefix "_" k && x != null) v;
        unknown = unique (attrNames (v._unknown or { })
          ++ filter (k: !hasAttr k fields) (attrNames given));
        results = mapAttrs
          (k: spec:
            let p = at path k; in
            if hasAttr k given then spec.type p given.${k}
            else if spec ? default then spec.type p spec.default
            else if spec.required then fail p "missing required attribute '${k}' of ${label}"
            else null)
          fields;
        present = filterAttrs (k: r: r != null) results;
        value = (schema.finish or (x: x)) (mapAttrs (k: r: r.value) present);
        errors =
          map (msg: { inherit path msg; }) (v._errors or [ ])
          ++ map (k: { path = at path k; msg = unknownMessage name k; }) unknown
          ++ concatMap (k: present.${k}.errors) (attrNames present);
      in
      {
        inherit value;
        # Struct-level rules look at field values, so only once those are sound.
        errors = if errors != [ ] then errors else (schema.check or (_: _: [ ])) path value;
      };

  # A constructor: tag the set, fill in the static defaults, and keep unknown
  # attributes aside for Job to report. Applying it twice changes nothing.
  construct = name: v:
    let
      tag = "aurora.${name}";
      fields = schemas.${name}.fields;
    in
    if isAttrs v && (v._type or null) == tag then v
    else if !isAttrs v || isDerivation v || v ? _type then {
      _type = tag;
      _invalid = true;
      _errors = [ "${name} takes an attribute set, got ${describe v}" ];
    }
    else
      let
        given = filterAttrs (k: _: !hasPrefix "_" k) v;
        defaults = mapAttrs (k: spec: spec.default) (filterAttrs (k: spec: spec ? default) fields);
      in
      defaults // intersectAttrs fields given // {
        _type = tag;
        _unknown = (v._unknown or { }) // removeAttrs given (attrNames fields);
      } // (if v ? _errors then { inherit (v) _errors; } else { });

  Process = construct "Process";
  Task = construct "Task";
  Resources = construct "Resources";
  Constraint = construct "Constraint";

  # ---- Helpers people know from Aurora's DSL (schema_helpers.py) ----

  # order [ a b c ] == [ { order = [ "a" "b" "c" ]; } ]; processes or names.
  order = processes: [
    (Constraint {
      order = map (p: if isAttrs p && p ? name then p.name else p)
        (if isList processes then processes else [ processes ]);
    })
  ];

  # Arithmetic that lets a wrong value through untouched, so that Job reports
  # it at its field instead of Nix failing inside the helper.
  numeric = f: a: b:
    if isNumber a && isNumber b then f a b else if isNumber a then b else a;
  add = numeric (a: b: a + b);
  maxOf = numeric max;

  resourcesOf = t: Resources (if isAttrs (t.resources or null) then t.resources else { });
  foldResources = f: tasks:
    let
      rs = map resourcesOf tasks;
      dim = k: foldl' f 0 (map (r: if r.${k} or null == null then 0 else r.${k}) rs);
    in
    Resources { cpu = dim "cpu"; ram = dim "ram"; disk = dim "disk"; gpu = dim "gpu"; };

  processesOf = t: if isList (t.processes or null) then map Process t.processes else [ ];
  constraintsOf = t: if isList (t.constraints or null) then map Constraint t.constraints else [ ];

  # The last task's fields, with the processes and constraints of all tasks
  # (duplicates dropped) and whatever each helper computes.
  mergeTasks = helper: tasks: extra:
    let
      ts = map Task tasks;
      last = elemAt ts (length ts - 1);
      badTasks = filter (i: !isList ((elemAt ts i).processes or null)) (genList (i: i) (length ts));
    in
    if !isList tasks then {
      _type = "aurora.Task";
      _invalid = true;
      _errors = [ "Tasks.${helper} takes a list of tasks, got ${describe tasks}" ];
    }
    else if ts == [ ] then Task { }
    else
      last // {
        processes = unique (concatMap processesOf ts);
        constraints = unique (concatMap constraintsOf ts);
        _unknown = foldl' (acc: t: acc // (t._unknown or { })) { } ts;
        _errors = concatMap (t: t._errors or [ ]) ts
          ++ map (i: "Tasks.${helper}: the task at index ${toString i} has no list of processes") badTasks;
      } // extra ts;

  Tasks = {
    # Run the tasks side by side: resources add up, finalization_wait is the
    # longest one.
    combine = tasks: mergeTasks "combine" tasks (ts: {
      resources = foldResources add ts;
      finalization_wait = foldl' maxOf 0 (map (t: t.finalization_wait or 30) ts);
    });

    # Run the tasks one after the other: every process of task k is ordered
    # before every process of task k+1; resources are the largest of each,
    # finalization_wait the sum.
    concat = tasks: mergeTasks "concat" tasks (ts: {
      resources = foldResources maxOf ts;
      finalization_wait = foldl' add 0 (map (t: t.finalization_wait or 30) ts);
      constraints = unique (concatMap constraintsOf ts
        ++ concatLists (genList
          (k: concatMap
            (p1: concatMap
              (p2: if p1 == p2 then [ ] else order [ (p1.name or null) (p2.name or null) ])
              (processesOf (elemAt ts (k + 1))))
            (processesOf (elemAt ts k)))
          (length ts - 1)));
    });

    simple = SimpleTask;
    sequential = SequentialTask;
  };

  # A Task whose processes run one after the other, in list order.
  SequentialTask = attrs:
    let
      t = Task attrs;
      procs = t.processes or [ ];
    in
    if (t.constraints or [ ]) != [ ] then
      t // {
        _errors = (t._errors or [ ]) ++ [
          "SequentialTask: the task already has constraints, and Aurora refuses to make such a task sequential (write the order constraints yourself)"
        ];
      }
    else t // { constraints = if procs == [ ] then [ ] else order procs; };

  # One process running `cmdline`, with 1 cpu and 1 GiB of ram and disk.
  SimpleTask = name: cmdline: Task {
    inherit name;
    processes = [ (Process { inherit name cmdline; }) ];
    resources = Resources { cpu = 1.0; ram = 1 * GB; disk = 1 * GB; };
  };

  # ---- Derivations ----

  # Copy the file named by $<attr>Path (written by Nix's passAsFile) to $out
  # byte for byte, with sh builtins only: the builder may assume /bin/sh and
  # nothing else. A lone environment variable is limited to 128 KiB by the
  # kernel, hence passAsFile. The final `printf` writes a last line that has
  # no newline.
  copyToOut = attr: ''
    set -e
    while IFS= read -r line; do printf '%s\n' "$line"; done < "''$${attr}Path" > "$out"
    printf '%s' "$line" >> "$out"
  '';

  # A file holding the process's cmdline. Nix's reference scanner makes the
  # output reference every store path the cmdline names, so the root's
  # closure is everything the process needs on the node.
  mkRoot = key: process: derivation {
    name = storeName "aurora-root-${key}-${process.name}";
    system = currentSystem;
    builder = "/bin/sh";
    args = [ "-c" (copyToOut "cmdline") ];
    cmdline = process.cmdline;
    passAsFile = [ "cmdline" ];
    preferLocalBuild = true;
    allowSubstitutes = false;
  };

  # ---- Job-level rules ----

  bindingPattern = concatStringsSep "|" [
    "thermos\\.ports\\[[A-Za-z0-9_./-]+]"
    "thermos\\.task_id"
    "thermos\\.user"
    "mesos\\.instance"
    "mesos\\.hostname"
    "role"
    "cluster"
    "environment"
    "name"
    "task\\.name"
    "instances"
  ];
  knownBindings = "{{thermos.ports[NAME]}}, {{thermos.task_id}}, {{thermos.user}}, {{mesos.instance}}, {{mesos.hostname}}, {{role}}, {{cluster}}, {{environment}}, {{name}}, {{task.name}}, {{instances}}";

  # The mustache references Thermos would try to bind in a cmdline.
  bindingsIn = s: map head (filter isList (split "\\{\\{([^{}]*)}}" s));

  # ---- Bindings: what Aurora's client does with {{mustache}} references ----
  #
  # pystachio interpolates every String of the job (struct fields, list
  # elements, map keys and values), so each is checked here, on the JSON as
  # Aurora reads it (init processes and filled-in defaults included). A
  # reference is bound if pystachio's scoping finds it: from the innermost
  # struct outwards, each struct's own fields (and `self.FIELD`), then its
  # parents', with `super.` stepping out, then the client's standard
  # bindings (mesos.role, mesos.cluster, thermos.user). Node bindings are
  # left for the executor: thermos.task_id, mesos.instance, mesos.hostname
  # and thermos.ports[NAME] (in the task exactly that form; Thermos also
  # binds thermos.user there). Refs into a Choice (container, sla_policy,
  # update_strategy) are not found: a Choice is not namable. `{{&x}}` is
  # left as `{{x}}` by the client's first pass, which the task's check then
  # binds, so in the task x must be bound then (without the standard
  # bindings); elsewhere it is not checked.

  # Fields that hold structs, lists and maps; every other field is a scalar.
  refKinds =
    let
      s = name: { t = "struct"; inherit name; };
      c = name: { t = "choice"; inherit name; };
      l = elem: { t = "list"; inherit elem; };
      m = { t = "map"; };
      scalar = { t = "scalar"; };
    in {
      Job = {
        task = s "Task"; announce = s "Announcer"; update_config = s "UpdateConfig";
        constraints = m; metadata = l (s "Metadata"); health_check_config = s "HealthCheckConfig";
        lifecycle = s "LifecycleConfig"; task_links = m; executor_config = s "ExecutorConfig";
        partition_policy = s "PartitionPolicy"; sla_policy = c "SlaPolicy"; container = c "Container";
      };
      Task = { processes = l (s "Process"); constraints = l (s "Constraint"); resources = s "Resources"; };
      Process = { logger = s "Logger"; resources = s "Resources"; };
      Constraint.order = l scalar;
      Logger.rotate = s "RotatePolicy";
      UpdateConfig.update_strategy = c "QueueUpdateStrategy";
      HealthCheckConfig.health_checker = s "HealthCheckerConfig";
      HealthCheckerConfig = { http = s "HttpHealthChecker"; shell = s "ShellHealthChecker"; };
      LifecycleConfig.http = s "HttpLifecycleConfig";
      Announcer.portmap = m;
      Container.docker = s "Docker";
      Docker.parameters = l (s "Parameter");
    };
  kindOf = name: field: refKinds.${name}.${field} or { t = "scalar"; };

  # pystachio's MustacheParser: {{REF}}, or {{&REF}} (and {{&REF&}}), which
  # it emits as {{REF}} instead of interpolating it.
  mustaches = s:
    map
      (m:
        let
          c = head m;
          alias = hasPrefix "&" c && stringLength c > 1;
          a = if alias then substring 1 (stringLength c - 1) c else c;
          addr = if alias && stringLength a > 1 && substring (stringLength a - 1) 1 a == "&"
            then substring 0 (stringLength a - 1) a else a;
        in { inherit alias addr; text = "{{${c}}}"; })
      (filter isList (split "\\{\\{([^{}]+)}}" s));

  # pystachio's Ref.from_address (ASCII \w, as on Aurora's Python 2):
  # .NAME or [INDEX] components; null if the address is invalid.
  parseRef = addr:
    let
      full = if hasPrefix "[" addr || hasPrefix "." addr then addr else ".${addr}";
      parts = split "(\\.[A-Za-z_][A-Za-z0-9_]*|\\[[A-Za-z0-9_./-]+])" full;
      texts = filter isString parts;
      comps = map
        (m: let c = head m; in
          if hasPrefix "." c then { deref = substring 1 (stringLength c - 1) c; }
          else { index = substring 1 (stringLength c - 2) c; })
        (filter isList parts);
    in
    if addr == "" || match "[A-Za-z_.[].*" addr == null || any (t: t != "") texts then null
    else comps;

  isDeref = name: comp: (comp.deref or null) == name;
  refIs = names: comps: length comps == length names
    && all (i: isDeref (elemAt names i) (elemAt comps i)) (genList (i: i) (length names));

  # Struct.find / List.find / Map.find: is `comps` found in value v of kind k?
  findValue = kind: v: comps:
    if comps == [ ] then true
    else
      let h = head comps; rest = tail comps; in
      if kind.t == "struct" then
        h ? deref && isAttrs v && v ? ${h.deref}
        && findValue (kindOf kind.name h.deref) v.${h.deref} rest
      else if kind.t == "list" then
        let
          neg = h ? index && hasPrefix "-" h.index;
          digits = if neg then substring 1 (stringLength h.index) h.index else h.index or "";
          n0 = if h ? index && match "[0-9]+" digits != null then fromDecimal digits else null;
          # Python's list[-1] is the last element.
          i = if n0 == null then null else if neg then length v - n0 else n0;
        in
        i != null && i >= 0 && i < length v && findValue kind.elem (elemAt v i) rest
      else if kind.t == "map" then
        h ? index && v ? ${h.index} && rest == [ ]
      else false; # scalars and Choices are not namable

  # "007" -> 7 (fromJSON refuses leading zeros); null beyond 18 digits,
  # where a list index is out of range anyway.
  fromDecimal = d:
    let value = { "0" = 0; "1" = 1; "2" = 2; "3" = 3; "4" = 4; "5" = 5; "6" = 6; "7" = 7; "8" = 8; "9" = 9; };
    in if stringLength d > 18 then null
    else foldl' (acc: i: acc * 10 + value.${substring i 1 d}) 0 (genList (i: i) (stringLength d));

  # The client's standard bindings and its MesosContext (instance and
  # hostname are not set yet, so only `mesos` itself is found there).
  inStandardBindings = comps:
    refIs [ "mesos" ] comps || refIs [ "mesos" "role" ] comps
    || refIs [ "mesos" "cluster" ] comps || refIs [ "thermos" "user" ] comps;

  # Struct.scopes(): the innermost struct's `self` and fields, then the
  # parents' scopes, then those again under `super`. `chain` is innermost
  # first; `envs` says whether the standard bindings are in scope.
  findInScope = envs: chain: comps:
    let
      s = head chain;
      parent = tail chain;
      h = head comps;
      rest = tail comps;
      inEnvs = c: envs && inStandardBindings c;
    in
    (isDeref "self" h && rest != [ ] && findValue s.kind s.value rest)
    || findValue s.kind s.value comps
    || (if parent == [ ] then inEnvs comps || (isDeref "super" h && rest != [ ] && inEnvs rest)
        else findInScope envs parent comps
          || (isDeref "super" h && (rest == [ ] || findInScope envs parent rest)));

  boundMessage = inTask: ref:
    if inTask then "Aurora refuses it (\"Unexpected unbound refs: ${ref}. Make sure you are not nesting template variables.\")"
    else "Aurora refuses it (\"Config contains unbound variables: ${ref}\")";
  refHint = "a reference names a field in scope (e.g. {{name}}, {{role}}, {{cluster}}, {{environment}}, {{instances}}, {{task.name}}, {{processes[0].name}}, {{task.resources.cpu}}) or a node binding ({{thermos.ports[NAME]}}, {{thermos.task_id}}, {{thermos.user}}, {{mesos.instance}}, {{mesos.hostname}})";

  # The problems of one string at `path`, inside the task or not.
  stringBindingErrors = inTask: chain: path: str:
    let
      err = msg: [ { inherit path msg; } ];
      check = m:
        let
          comps = parseRef m.addr;
          portRest = if comps != null && length comps > 2 && refIs [ "thermos" "ports" ] (genList (i: elemAt comps i) 2)
            then genList (i: elemAt comps (i + 2)) (length comps - 2) else null;
          node = comps != null && (refIs [ "thermos" "task_id" ] comps || refIs [ "mesos" "instance" ] comps || refIs [ "mesos" "hostname" ] comps);
          # The task's check after the client's pass: Thermos's bindings.
          thermos = comps != null && (refIs [ "thermos" ] comps || refIs [ "thermos" "user" ] comps || refIs [ "thermos" "ports" ] comps);
          ref = "{{${m.addr}}}";
          unbound = err ("unknown binding '${m.text}'"
            + (if m.alias then " (Aurora's client leaves it as ${ref}, which the task's check binds without the client's standard bindings)" else "")
            + ": ${boundMessage inTask ref}; ${refHint}");
        in
        if m.alias && !inTask then [ ]
        else if comps == null then
          err "'${m.text}' is not a reference pystachio can parse (parts NAME, .NAME or [INDEX], INDEX of letters, digits and _ - . /), so Aurora fails to load the job"
        else if portRest != null then
          (if !inTask then [ ]
          else if !((head portRest) ? index) then
            err "'${m.text}': a port is written {{thermos.ports[NAME]}}; Aurora refuses the task (\"Bad port specification\")"
          else if length portRest > 1 then unbound
          else [ ])
        else if node then [ ]
        else if findInScope (!m.alias) chain comps then [ ]
        else if m.alias && thermos then [ ]
        else unbound;
      nested = filter isList (split "(\\{\\{[^{}]*\\{\\{[^{}]+}}[^{}]*}})" str);
    in
    if !(isString str) || length (split "\\{\\{" str) == 1 then [ ]
    else
      map (n: { inherit path; msg = "nested references '${head n}': Aurora binds the inner one only, then refuses the outer one (\"Unexpected unbound refs: ... Make sure you are not nesting template variables.\")"; }) nested
      ++ concatMap check (mustaches str);

  # Every string of a normalised struct `v` of schema `name`, with its
  # scope chain. `at` maps a path of the JSON to the path reported.
  structBindingErrors = report: inTask: name: v: chain: path:
    let
      here = [ { kind = { t = "struct"; inherit name; }; value = v; } ] ++ chain;
      field = k:
        let
          x = v.${k};
          kind = kindOf name k;
          p = at path k;
          task = inTask || (chain == [ ] && k == "task");
        in
        valueBindingErrors report task kind x here p;
    in
    concatMap field (attrNames v);

  valueBindingErrors = report: inTask: kind: x: chain: path:
    if kind.t == "struct" || kind.t == "choice" then
      (if isAttrs x then structBindingErrors report inTask kind.name x chain path else [ ])
    else if kind.t == "list" then
      concatLists (imap0 (i: e: valueBindingErrors report inTask kind.elem e chain (atIndex path i)) x)
    else if kind.t == "map" then
      concatMap
        (k: stringBindingErrors inTask chain (report (at path k)) k
          ++ stringBindingErrors inTask chain (report (at path k)) x.${k})
        (attrNames x)
    else if isString x then stringBindingErrors inTask chain (report path) x
    else [ ];

  # Names of roles, environments and jobs: Python's ^[\w\-\.]+$ in ASCII.
  identErrors = path: what: note: v:
    optional (match "[A-Za-z0-9_.-]+" v == null) {
      inherit path;
      msg = "${what} ${toJSON v} must match ^[\\w\\-\\.]+$ (letters, digits, '_', '-' and '.')${note}";
    }
    ++ optional (stringLength v > 255) {
      inherit path;
      msg = "${what} is ${toString (stringLength v)} characters long; the scheduler accepts at most 255";
    };

  nonNegative = path: v:
    optional (v < 0) { inherit path; msg = "must not be negative, got ${showNumber v}"; };

  # Thermos's planner rules, on the final process list and constraints
  # (each `{ path; order; }`), so the init processes are checked too.
  orderingErrors = processes: constraints:
    let
      byName = listToAttrs (map (p: { name = p.name; value = p; }) processes);
      names = map (p: p.name) processes;
      pairsOf = o:
        if length o < 2 then [ ]
        else genList (k: { from = elemAt o k; to = elemAt o (k + 1); }) (length o - 1);

      check = c:
        let
          o = c.order;
          unknown = unique (filter (n: !hasAttr n byName) o);
          finals = unique (filter (n: byName.${n}.final) o);
          regulars = unique (filter (n: !byName.${n}.final) o);
          err = msg: [ { inherit (c) path; inherit msg; } ];
        in
        if o == [ ] then
          err "an order constraint needs at least one process name (Thermos rejects an empty one)"
        else if unknown != [ ] then
          err ("names unknown ${plural (length unknown) "process"} ${quoteList unknown} (the task's processes are ${quoteList names})"
            + (if length unknown == length (unique o)
               then ": Thermos would ignore an order that names no process of the task, but nix-aurora refuses it, as it most likely misspells a name and would order nothing"
               else ""))
        else if finals != [ ] && regulars != [ ] then
          err "mixes final ${plural (length finals) "process"} ${quoteList finals} with regular ${plural (length regulars) "process"} ${quoteList regulars}; Thermos plans the two kinds separately, so an order must name only one kind"
        else
          concatMap
            (e:
              let a = byName.${e.from}; b = byName.${e.to}; in
              if a.daemon then
                err "orders '${b.name}' after daemon process '${a.name}': a daemon is restarted forever and never finishes, so nothing may be ordered after it"
              else if a.ephemeral && !b.ephemeral then
                err "orders non-ephemeral process '${b.name}' after ephemeral process '${a.name}', which Thermos forbids"
              else [ ])
            (pairsOf o);

      perConstraint = map (c: { inherit c; errors = check c; }) constraints;
      edges = concatMap (r: if r.errors == [ ] then pairsOf r.c.order else [ ]) perConstraint;

      # Drop processes without a predecessor or without a successor until
      # nothing changes: what is left lies on a cycle.
      cyclic = nodes:
        let
          live = filter (e: elem e.from nodes && elem e.to nodes) edges;
          keep = filter (n: any (e: e.to == n) live && any (e: e.from == n) live) nodes;
        in
        if length keep == length nodes then nodes else cyclic keep;
      cycle = cyclic names;
    in
    concatMap (r: r.errors) perConstraint
    ++ optional (cycle != [ ]) {
      path = "task.constraints";
      msg = "the order constraints form a cycle through ${quoteList cycle}, so none of them could ever start";
    };

  # ---- Job ----
  #
  # Job takes Aurora's Job attributes plus `nixInit`, which never reaches the
  # JSON: { enable ? true; command ? the cluster-wide profile's nix-init;
  # substituters ? [ ]; trustedPublicKeys ? [ ]; extraArgs ? [ ];
  # maxFailures ? 1; }. Unless disabled, a regular process `nix_init` runs
  #   COMMAND --substituter URL... --trusted-public-key KEY... EXTRA... 'NAME=ROOT'...
  # for the regular processes and is ordered before each of them, and, when
  # there are final processes, a final `nix_init_final` does the same for
  # them. Each word but a plain-path command is single-quoted for bash; NAME
  # is a process name, which cannot contain '/', so the first "=/" splits.
  # A job with a cron_schedule is a cron job, for `aurora cron schedule`
  # (`aurora job create` refuses it); it cannot be a service.
  # The result is a derivation with passthru `config` (the JSON as Nix),
  # `json` (the file's exact content) and `roots` (process name -> root).

  Job = attrs:
    let
      input = if isAttrs attrs && !isDerivation attrs then attrs else { };

      # The job's key for messages, from what the user wrote, before any
      # checks: it must never fail itself.
      shown = v: if isString v && v != "" then v else "?";
      taskIn = input.task or null;
      processesIn = if isAttrs taskIn then taskIn.processes or null else null;
      firstNameIn =
        if isList processesIn && processesIn != [ ] && isAttrs (head processesIn)
        then (head processesIn).name or null else null;
      taskNameIn =
        if isAttrs taskIn && isString (taskIn.name or null) then taskIn.name else firstNameIn;
      nameIn = if isString (input.name or null) then input.name else taskNameIn;
      key = concatStringsSep "/" (map shown [
        (input.cluster or null)
        (input.role or null)
        (input.environment or null)
        nameIn
      ]);

      format = e: "aurora: job ${key}: ${if e.path == "" then "" else "${e.path}: "}${e.msg}";
      reject = errors: throw (concatStringsSep "\n" (map format errors));

      # Stage 1: shape (unknown and missing attributes, types).
      jobResult =
        if !isAttrs attrs || isDerivation attrs then
          fail "" "Job takes an attribute set, got ${describe attrs}"
        else normalize "Job" "" (removeAttrs input [ "nixInit" ]);
      initResult = normalize "NixInit" "nixInit"
        (if (input.nixInit or null) == null then { } else input.nixInit);
      shapeErrors = jobResult.errors ++ initResult.errors;

      job = jobResult.value;
      nixInit = initResult.value;
      task = job.task;
      processes = task.processes;
      firstName = if processes == [ ] then null else (head processes).name;
      taskName = task.name or firstName;
      jobName = job.name or taskName;
      nameNote =
        if job ? name then ""
        else if task ? name then " (it is the task's name, as no job name is set: set name explicitly)"
        else " (it is the first process's name, as no job or task name is set: set name explicitly)";
      reserved = if nixInit.enable then [ "nix_init" "nix_init_final" ] else [ ];

      # Stage 2: values. Names first: the ordering rules need sound names.
      nameErrors =
        optional (job.cluster == "") { path = "cluster"; msg = "must not be empty"; }
        ++ identErrors "role" "role" "" job.role
        ++ identErrors "environment" "environment" "" job.environment
        ++ optional (match "prod|devel|test|staging[0-9]*" job.environment == null) {
          path = "environment";
          msg = "environment ${toJSON job.environment} is rejected by the Aurora scheduler: use prod, devel, test or staging<N>";
        }
        ++ optional (processes == [ ]) {
          path = "task.processes";
          msg = "a task needs at least one process: Aurora would load an empty list, but the task would run nothing; nix-aurora refuses it (the job's default name is its first process's, too)";
        }
        ++ (if processes == [ ] then [ ] else identErrors "name" "job name" nameNote jobName)
        ++ concatLists (imap0
          (i: p:
            let
              path = "task.processes[${toString i}].name";
              earlier = filter (j: (elemAt processes j).name == p.name) (genList (j: j) i);
            in
            optional (match "[^./][^/]*" p.name == null) {
              inherit path;
              msg = "process name ${toJSON p.name} must match ^[^./][^/]*$ (not empty, no '/', not starting with '.')";
            }
            ++ optional (earlier != [ ]) {
              inherit path;
              msg = "duplicate process name '${p.name}' (also task.processes[${toString (head earlier)}]): Aurora would load the job and keep only the last process of that name; nix-aurora refuses it, as the others would be dropped without a word";
            }
            ++ optional (elem p.name reserved) {
              inherit path;
              msg = "duplicate process name '${p.name}': the name is reserved for the init process nix-aurora adds (or set nixInit.enable = false)";
            })
          processes);

      resources = task.resources;
      update = job.update_config;
      health = job.health_check_config;
      dedicated = (job.constraints or { }) ? dedicated;
      minFailures = job.instances * 2 / 100; # floor(2% of instances), as Aurora's client
      valueErrors =
        optional (job.service && job ? cron_schedule) {
          path = "cron_schedule";
          msg = "a service (service = true) cannot have a cron schedule: the Aurora scheduler refuses it (\"A service task may not be run on a cron schedule\"); drop one of them";
        }
        ++ optional ((job.cron_schedule or null) == "") {
          path = "cron_schedule";
          msg = "must not be empty: 'aurora cron schedule' sends it and the scheduler refuses it (\"Job has an empty cron schedule.\"); remove it for a job that is not a cron job";
        }
        ++ optional (job ? cron_schedule && job.cron_collision_policy == "RUN_OVERLAP") {
          path = "cron_collision_policy";
          msg = "RUN_OVERLAP is accepted by Aurora's client, but the scheduler refuses a cron job with it (\"The RUN_OVERLAP collision policy has been removed (AURORA-38).\"): use KILL_EXISTING or CANCEL_NEW";
        }
        ++ optional (job.instances < 1) {
          path = "instances";
          msg = "must be at least 1, got ${toJSON job.instances}";
        }
        ++ optional (resources.cpu <= 0) {
          path = "task.resources.cpu";
          msg = "cpu must be greater than 0, got ${showNumber resources.cpu}";
        }
        ++ concatMap
          (dim: optional (resources.${dim} < MB) {
            path = "task.resources.${dim}";
            msg = "${dim} must be at least 1 MiB (${toString MB} bytes), got ${toJSON resources.${dim}} bytes: Aurora divides it by MiB and rejects 0 (write e.g. 64 * MB)";
          })
          [ "ram" "disk" ]
        ++ optional (resources.gpu < 0) {
          path = "task.resources.gpu";
          msg = "must not be negative, got ${toJSON resources.gpu}: Aurora's client and scheduler do not check it, but nix-aurora refuses it, as a negative number of GPUs means nothing";
        }
        ++ optional (update.max_total_failures >= job.instances) {
          path = "update_config.max_total_failures";
          msg = "must be less than instances (${toString job.instances}), got ${toJSON update.max_total_failures}: use at most ${toString (job.instances - 1)}";
        }
        ++ optional (dedicated && update.max_total_failures < minFailures) {
          path = "update_config.max_total_failures";
          msg = "a dedicated job with ${toString job.instances} instances must tolerate at least 2% of them failing: use at least ${toString minFailures}";
        }
        ++ optional (update.batch_size < 1) {
          path = "update_config.batch_size";
          msg = "must be at least 1, got ${toJSON update.batch_size}: 'aurora job create' does not read update_config and would accept it, but 'aurora update start' refuses it (\"Batch size should be greater than 0\"), so nix-aurora refuses it now";
        }
        ++ nonNegative "update_config.watch_secs" update.watch_secs
        ++ nonNegative "health_check_config.initial_interval_secs" health.initial_interval_secs
        ++ nonNegative "health_check_config.interval_secs" health.interval_secs
        ++ optional (health.timeout_secs < 0) {
          path = "health_check_config.timeout_secs";
          msg = "must not be negative, got ${showNumber health.timeout_secs}: Aurora's client does not check it and would accept it, but nix-aurora refuses it, as a negative timeout means nothing to the executor's health checks";
        }
        ++ nonNegative "health_check_config.max_consecutive_failures" health.max_consecutive_failures
        ++ nonNegative "health_check_config.min_consecutive_successes" health.min_consecutive_successes
        ++ (if job ? announce && !dedicated then
          concatMap
            (port: optional (match "[0-9]+" job.announce.portmap.${port} != null) {
              path = "announce.portmap.${port}";
              msg = "static port ${job.announce.portmap.${port}} needs a dedicated job (constraints.dedicated), as Aurora requires";
            })
            (attrNames job.announce.portmap)
        else [ ])
        ++ structBindingErrors reportPath false "Job" config [ ] "";

      # A path of the JSON as the user wrote it: the init processes and
      # their constraints are nixInit's, and the user's processes come
      # after the init processes.
      nInit = length initProcesses;
      nUserConstraints = length task.constraints;
      reportPath = p:
        let
          proc = match "task\\.processes\\[([0-9]+)](.*)" p;
          cons = match "task\\.constraints\\[([0-9]+)](.*)" p;
          i = fromDecimal (head proc);
        in
        if proc != null then
          (if i < nInit then "nixInit" else "task.processes[${toString (i - nInit)}]${elemAt proc 1}")
        else if cons != null && fromDecimal (head cons) >= nUserConstraints then "nixInit"
        else p;

      # The init processes: one per kind (regular, final) that has processes.
      rootKey = "${job.cluster}-${job.role}-${job.environment}-${jobName}";
      roots = listToAttrs (map (p: { name = p.name; value = mkRoot rootKey p; }) processes);
      regular = filter (p: !p.final) processes;
      finals = filter (p: p.final) processes;

      initCmdline = served:
        let
          command =
            if match "/[A-Za-z0-9+._/-]+" nixInit.command != null
            then nixInit.command else shellQuote nixInit.command;
          args =
            concatMap (s: [ "--substituter" s ]) nixInit.substituters
            ++ concatMap (k: [ "--trusted-public-key" k ]) nixInit.trustedPublicKeys
            ++ nixInit.extraArgs
            ++ map (p: "${p.name}=${roots.${p.name}}") served;
        in
        concatStringsSep " " ([ command ] ++ map shellQuote args);

      initFor = name: final: served:
        if nixInit.enable && served != [ ] then [{
          inherit name final;
          cmdline = initCmdline served;
          max_failures = nixInit.maxFailures;
          daemon = false;
          ephemeral = false;
          min_duration = 5;
        }] else [ ];
      initRegular = initFor "nix_init" false regular;
      initFinal = initFor "nix_init_final" true finals;
      initProcesses = initRegular ++ initFinal;
      initConstraints =
        (if initRegular != [ ] then map (p: { order = [ "nix_init" p.name ]; }) regular else [ ])
        ++ (if initFinal != [ ] then map (p: { order = [ "nix_init_final" p.name ]; }) finals else [ ]);

      allProcesses = initProcesses ++ processes;
      allConstraints = task.constraints ++ initConstraints;

      # Stage 3: ordering, on the final lists.
      orderErrors = orderingErrors allProcesses (
        imap0 (i: c: { path = "task.constraints[${toString i}].order"; inherit (c) order; }) task.constraints
        ++ map (c: { path = "nixInit"; inherit (c) order; }) initConstraints);

      # Later stages assume the earlier ones passed: values need the shape,
      # and the ordering rules need sound, unique process names.
      errors =
        if shapeErrors != [ ] then shapeErrors
        else nameErrors ++ valueErrors ++ (if nameErrors == [ ] then orderErrors else [ ]);

      config = job // {
        name = jobName;
        task = task // {
          name = taskName;
          processes = allProcesses;
          constraints = allConstraints;
        };
      };
      json = jsonText config;

      drv = derivation {
        name = substring 0 202 (storeName "aurora-job-${rootKey}") + ".json";
        system = currentSystem;
        builder = "/bin/sh";
        args = [ "-c" (copyToOut "jobJSON") ];
        jobJSON = json;
        passAsFile = [ "jobJSON" ];
        # Building the job builds every root, even those the JSON does not
        # name (nixInit.enable = false), so one build has the whole closure.
        roots = map (name: roots.${name}) (attrNames roots);
        preferLocalBuild = true;
        allowSubstitutes = false;
      };
    in
    if errors != [ ] then reject errors
    else drv // { inherit config roots json; };

  Service = attrs: Job (if isAttrs attrs && !isDerivation attrs then attrs // { service = true; } else attrs);

  # ---- Templated files ----
  #
  # Thermos expands {{bindings}} in cmdlines only, never in files. A file
  # that needs them (a config with the port Aurora assigns) is kept in the
  # store as a template, and `templateFile` returns a cmdline fragment that,
  # at run time, writes the expanded file into the sandbox and yields its
  # path:
  #   cmdline = "${pkgs.prometheus}/bin/prometheus --config.file=${templateFile ./prometheus.yml}";
  # The bindings are found here, at evaluation (an unknown one is an error),
  # and handed to `nix-init render` in a quoted here-document, one value per
  # section: Thermos substitutes the values into the cmdline and bash passes
  # them on untouched, whatever they contain (spaces, quotes, `$`, newlines).
  # A template without bindings is used as it is, from the store.
  templateFileWith = { name ? null, command ? defaultNixInit }: template:
    let
      text = builtins.readFile template;
      src =
        if isPath template
        then builtins.path { path = template; name = storeName (baseNameOf (toString template)); }
        else template;
      # A store path's base name without its hash, or a path's file name,
      # without a template suffix.
      base =
        let b = baseNameOf (toString template);
            noHash = if match "[0-9a-z]{32}-.*" b != null then substring 33 (stringLength b) b else b;
            stripped = match "(.*)\\.(in|tmpl|template)" noHash;
        in if stripped != null then head stripped else noHash;
      outName = if name != null then name else base;
      refs = unique (bindingsIn text);
      bad = filter (ref: match bindingPattern ref == null) refs;
      # Delimiters no binding value can contain by chance.
      tag = "NIX_AURORA_${substring 0 16 (builtins.hashString "sha256" text)}";
      sections = concatStringsSep "" (map (r: "{{${r}}}\n${tag}\n") refs);
      commandWord =
        if match "/[A-Za-z0-9+._/-]+" command != null then command else shellQuote command;
      args = [ "render" "--template" "${src}" "--out" outName "--separator" tag ]
        ++ concatMap (r: [ "--binding" r ]) refs;
    in
    if bad != [ ] then
      throw "aurora: templateFile ${toString template}: unknown ${plural (length bad) "binding"} ${quoteList (map (r: "{{${r}}}") bad)}; known bindings are ${knownBindings}"
    else if outName == "" || match "[^/]*" outName == null || outName == "." || outName == ".." then
      throw "aurora: templateFile ${toString template}: output name '${outName}' must be a plain file name"
    else if refs == [ ] then "${src}"
    else "$(${concatStringsSep " " ([ commandWord ] ++ map shellQuote args)} <<'${tag}_END'\n${sections}${tag}_END\n)";

  templateFile = templateFileWith { };
in
{
  inherit Job Service Task Process Resources Constraint order Tasks SequentialTask SimpleTask;
  inherit templateFile templateFileWith;
  inherit B KB MB GB TB;

  Announcer = construct "Announcer";
  Container = construct "Container";
  CoordinatorSlaPolicy = construct "CoordinatorSlaPolicy";
  CountSlaPolicy = construct "CountSlaPolicy";
  Docker = construct "Docker";
  ExecutorConfig = construct "ExecutorConfig";
  HealthCheckConfig = construct "HealthCheckConfig";
  HealthCheckerConfig = construct "HealthCheckerConfig";
  HttpHealthChecker = construct "HttpHealthChecker";
  HttpLifecycleConfig = construct "HttpLifecycleConfig";
  LifecycleConfig = construct "LifecycleConfig";
  Logger = construct "Logger";
  Metadata = construct "Metadata";
  Parameter = construct "Parameter";
  PartitionPolicy = construct "PartitionPolicy";
  PercentageSlaPolicy = construct "PercentageSlaPolicy";
  QueueUpdateStrategy = construct "QueueUpdateStrategy";
  RotatePolicy = construct "RotatePolicy";
  ShellHealthChecker = construct "ShellHealthChecker";
  UpdateConfig = construct "UpdateConfig";
}
