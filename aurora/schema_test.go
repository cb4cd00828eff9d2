package aurora

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestDefaults(t *testing.T) {
	j := parseJob(t, patched(t, `{"announce": {}, "task": {"processes": [{"name": "hello", "cmdline": "true", "logger": {}}]}}`))
	before, _ := json.Marshal(j)
	d := j.Defaults()
	if after, _ := json.Marshal(j); string(before) != string(after) {
		t.Error("Defaults changed the job it was called on")
	}
	p := d.Task.Processes[0]
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"name", *d.Name, "{{task.name}}"},
		{"instances", *d.Instances, int64(1)},
		{"cron_collision_policy", *d.CronCollisionPolicy, "KILL_EXISTING"},
		{"service", *d.Service, false},
		{"max_task_failures", *d.MaxTaskFailures, int64(1)},
		{"production", *d.Production, false},
		{"priority", *d.Priority, int64(0)},
		{"enable_hooks", *d.EnableHooks, false},
		{"metadata", d.Metadata, []Metadata{}},
		{"update_config.batch_size", *d.UpdateConfig.BatchSize, int64(1)},
		{"update_config.watch_secs", *d.UpdateConfig.WatchSecs, int64(45)},
		{"update_config.max_per_shard_failures", *d.UpdateConfig.MaxPerShardFailures, int64(0)},
		{"update_config.max_total_failures", *d.UpdateConfig.MaxTotalFailures, int64(0)},
		{"update_config.rollback_on_failure", *d.UpdateConfig.RollbackOnFailure, true},
		{"update_config.wait_for_batch_completion", *d.UpdateConfig.WaitForBatchCompletion, false},
		{"update_config.sla_aware", *d.UpdateConfig.SlaAware, false},
		{"health_check_config.initial_interval_secs", *d.HealthCheckConfig.InitialIntervalSecs, 15.0},
		{"health_check_config.interval_secs", *d.HealthCheckConfig.IntervalSecs, 10.0},
		{"health_check_config.timeout_secs", *d.HealthCheckConfig.TimeoutSecs, 1.0},
		{"health_check_config.max_consecutive_failures", *d.HealthCheckConfig.MaxConsecutiveFailures, int64(0)},
		{"health_check_config.min_consecutive_successes", *d.HealthCheckConfig.MinConsecutiveSuccesses, int64(1)},
		{"health_checker.http.endpoint", *d.HealthCheckConfig.HealthChecker.HTTP.Endpoint, "/health"},
		{"health_checker.http.expected_response", *d.HealthCheckConfig.HealthChecker.HTTP.ExpectedResponse, "ok"},
		{"health_checker.http.expected_response_code", *d.HealthCheckConfig.HealthChecker.HTTP.ExpectedResponseCode, int64(0)},
		{"lifecycle.http.port", *d.Lifecycle.HTTP.Port, "health"},
		{"lifecycle.http.graceful_shutdown_endpoint", *d.Lifecycle.HTTP.GracefulShutdownEndpoint, "/quitquitquit"},
		{"lifecycle.http.shutdown_endpoint", *d.Lifecycle.HTTP.ShutdownEndpoint, "/abortabortabort"},
		{"lifecycle.http.graceful_shutdown_wait_secs", *d.Lifecycle.HTTP.GracefulShutdownWaitSecs, int64(5)},
		{"lifecycle.http.shutdown_wait_secs", *d.Lifecycle.HTTP.ShutdownWaitSecs, int64(5)},
		{"announce.primary_port", *d.Announce.PrimaryPort, "http"},
		{"announce.portmap", d.Announce.Portmap, map[string]string{"aurora": "{{primary_port}}"}},
		{"task.name", *d.Task.Name, "{{processes[0].name}}"},
		{"task.constraints", d.Task.Constraints, []Constraint{}},
		{"task.max_failures", *d.Task.MaxFailures, int64(1)},
		{"task.max_concurrency", *d.Task.MaxConcurrency, int64(0)},
		{"task.finalization_wait", *d.Task.FinalizationWait, int64(30)},
		{"task.resources.gpu", *d.Task.Resources.GPU, int64(0)},
		{"process.max_failures", *p.MaxFailures, int64(1)},
		{"process.daemon", *p.Daemon, false},
		{"process.ephemeral", *p.Ephemeral, false},
		{"process.min_duration", *p.MinDuration, int64(5)},
		{"process.final", *p.Final, false},
		{"logger.destination", *p.Logger.Destination, "file"},
		{"logger.mode", *p.Logger.Mode, "standard"},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.what, c.got, c.want)
		}
	}
	// What has no default, or whose presence means something, stays absent.
	if d.Contact != nil || d.Tier != nil || d.CronSchedule != nil || d.Constraints != nil || d.TaskLinks != nil ||
		d.PartitionPolicy != nil || d.SlaPolicy != nil || d.Container != nil ||
		d.Announce.ZkPath != nil || d.Task.User != nil || p.Resources != nil || p.Logger.Rotate != nil ||
		d.UpdateConfig.PulseIntervalSecs != nil || d.UpdateConfig.UpdateStrategy != nil {
		t.Errorf("Defaults added attributes that have no default: %+v", d)
	}
	// Aurora's executor_config is Default(ExecutorConfig, ExecutorConfig()).
	if *d.ExecutorConfig.Name != "AuroraExecutor" || *d.ExecutorConfig.Data != "" {
		t.Errorf("executor_config = %+v", d.ExecutorConfig)
	}
	if d.Validate() != nil || j.Validate() != nil {
		t.Error("a job and its defaults validate alike")
	}
}

func TestDefaultsKeepMeaning(t *testing.T) {
	j := parseJob(t, patched(t, `{"lifecycle": {}, "health_check_config": {"health_checker": {"shell": {"shell_command": "true"}}},
		"announce": {"portmap": {}}, "task": {"processes": [{"name": "hello", "cmdline": "true"}]}}`))
	d := j.Defaults()
	if d.Lifecycle.HTTP != nil {
		t.Error("an empty lifecycle (disabled) must stay empty")
	}
	if d.HealthCheckConfig.HealthChecker.HTTP != nil {
		t.Error("a shell health check must not gain an http one")
	}
	if len(d.Announce.Portmap) != 0 {
		t.Error("an empty portmap must stay empty")
	}
	if d.Task.Processes[0].Logger != nil {
		t.Error("an absent logger must stay absent")
	}
	jobs, _ := Parse(readFile(t, "testdata/service.json"))
	s := jobs[0].Defaults()
	if *s.Task.Processes[1].Logger.Rotate.Backups != 3 || *s.UpdateConfig.WatchSecs != 60 {
		t.Error("Defaults changed values that were set")
	}
}

// Each default is a value of its own: changing one (a caller may) changes
// no other process, and no later job.
func TestDefaultsShareNothing(t *testing.T) {
	j := parseJob(t, patched(t, `{"task": {"processes": [{"name": "a", "cmdline": "true"}, {"name": "b", "cmdline": "true"}]}}`))
	d := j.Defaults()
	*d.Task.Processes[0].MaxFailures = 7
	*d.HealthCheckConfig.HealthChecker.HTTP.Endpoint = "/changed"
	if *d.Task.Processes[1].MaxFailures != 1 {
		t.Error("processes share a default")
	}
	again := j.Defaults()
	if *again.Task.Processes[0].MaxFailures != 1 || *again.HealthCheckConfig.HealthChecker.HTTP.Endpoint != "/health" {
		t.Error("a changed default leaked into the next Defaults")
	}
}

func TestKeyAndAccessors(t *testing.T) {
	jobs, err := Parse(readFile(t, "testdata/jobs.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got := jobs[0].Key(); got != "c1/alice/devel/hello" {
		t.Errorf("Key() = %q (the name defaults to the task's, which defaults to the first process's)", got)
	}
	if got := jobs[1].Key(); got != "c1/alice/test/batch" {
		t.Errorf("Key() = %q", got)
	}
	if got := (Job{}).Key(); got != "///{{task.name}}" {
		t.Errorf("empty job Key() = %q", got)
	}
	task := jobs[1].Task
	if p, ok := task.ProcessByName("b"); !ok || !p.IsFinal() || p.IsDaemon() || p.IsEphemeral() {
		t.Errorf("ProcessByName(b) = %+v, %v", p, ok)
	}
	if p, ok := task.ProcessByName("b"); ok {
		*p.Cmdline = "changed"
		if *task.Processes[1].Cmdline != "changed" {
			t.Error("ProcessByName must return the task's own process")
		}
	}
	if _, ok := task.ProcessByName("zz"); ok {
		t.Error("ProcessByName(zz)")
	}
	if _, ok := (*Task)(nil).ProcessByName("a"); ok {
		t.Error("nil task")
	}
	if jobs[0].InstanceCount() != 1 || jobs[1].InstanceCount() != 2 || jobs[0].IsService() {
		t.Error("InstanceCount / IsService")
	}
}
