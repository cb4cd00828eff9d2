# Numbers in every float field of a job, one job per value. The Go test
# compares the JSON of these jobs with a committed file on whatever Nix runs
# it, so every Nix the tests run with must print the same bytes; and each
# float's text must read back as the same double (TestNumbersReadBack).
let
  aurora = import ../default.nix;
  inherit (aurora) Job Task Process Resources HealthCheckConfig MB;
  inherit (builtins) concatLists concatStringsSep filter foldl' genList map;

  # 10^n as a float, exact for the n used here.
  pow10 = n: foldl' (acc: _: acc * 10.0) 1.0 (genList (i: i) n);

  # Decimals of 1 to 6 significant digits from 1e-15 to 99999.9 (as the
  # nearest double, as if written as a literal), and the integral floats and
  # integers above them.
  mantissas = [ 1 5 15 25 125 999 1001 12345 99999 100001 123456 654321 999999 ];
  decimals = filter (v: v >= 1.0e-15) (concatLists (map (m: genList (j: m / pow10 (j + 1)) 20) mantissas));
  integral = [ 0.0 1.0 2.0 15.0 100.0 100000.0 1000000.0 1234567.0 999999999999999.0 0 1 7 123456789 ];
  # Decimals of 7 to 17 significant digits, which Nix 2.8's toJSON would
  # round to 6.
  long = [ 0.1234567 1234.5678 2.0000001 100000.5 99.123456 123456789.123 0.30000000000000004
    3.141592653589793 2.718281828459045 1.0e-7 1.2345678901234567e-10 98765.43210987654
    999999999999999.9 0.1000000000000001 ];
  # Results of arithmetic (with their float noise).
  computed = [ (0.1 + 0.2) (0.1 * 3) (1.1 * 1.1) (2.675 * 100) (1.0 / 8) (0.7 + 0.1) (1.0 - 0.9) (3 * 1.1) ];

  job = v: Job {
    cluster = "devcluster";
    role = "www-data";
    environment = "devel";
    name = "numbers";
    nixInit.enable = false;
    task = Task {
      processes = [ (Process { name = "a"; cmdline = "true"; }) ];
      resources = Resources { cpu = if v > 0 then v else 1; ram = 64 * MB; disk = 64 * MB; };
    };
    health_check_config = HealthCheckConfig { initial_interval_secs = v; interval_secs = v; timeout_secs = v; };
  };

  # The float fields as the job's JSON writes them, as one line.
  texts = v:
    let
      json = (job v).json;
      field = name: builtins.head (builtins.match ".*\"${name}\":([^,}]*).*" json);
    in map field [ "cpu" "initial_interval_secs" "interval_secs" "timeout_secs" ];
  fields = v: "[" + concatStringsSep "," (texts v) + "]";
  values = decimals ++ integral ++ long ++ computed;
in
{
  # One job's whole JSON, and the float fields of all of them.
  job = (job 0.25).json;
  fields = concatStringsSep "\n" (map fields values) + "\n";
  # Values whose text does not read back as the same number (cpu is 1
  # where v is 0).
  notReadBack = filter (v: builtins.any (t: builtins.fromJSON t != v) (builtins.tail (texts v))) values;
}
