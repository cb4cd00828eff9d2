package aurora

// The types below mirror Aurora's pystachio schema (Aurora 0.22:
// apache/aurora/config/schema/base.py and apache/thermos/config/schema_base.py).
// JSON keys are Aurora's attribute names. Every scalar is a pointer and every
// list or map keeps nil apart from empty, so that an absent key stays absent
// when a parsed job is encoded again (omitzero) and defaults can be told from
// values the author wrote.
//
// Struct tags:
//
//	default:"JSON"   Aurora's default for an absent attribute (see Defaults).
//	aurora:"required" pystachio's Required(...): absent is "Type[attr] is required.".

// Job is Aurora's Job (MesosJob). A Service is a Job with service: true.
type Job struct {
	Name                *string            `json:"name,omitzero" default:"\"{{task.name}}\""`
	Role                *string            `json:"role,omitzero"`
	Contact             *string            `json:"contact,omitzero"`
	Cluster             *string            `json:"cluster,omitzero"`
	Environment         *string            `json:"environment,omitzero"`
	Instances           *int64             `json:"instances,omitzero" default:"1"`
	Task                *Task              `json:"task,omitzero"`
	Announce            *Announcer         `json:"announce,omitzero"`
	Tier                *string            `json:"tier,omitzero"`
	CronSchedule        *string            `json:"cron_schedule,omitzero"`
	CronCollisionPolicy *string            `json:"cron_collision_policy,omitzero" default:"\"KILL_EXISTING\""`
	UpdateConfig        *UpdateConfig      `json:"update_config,omitzero" default:"{}"`
	Constraints         map[string]string  `json:"constraints,omitzero"`
	Metadata            []Metadata         `json:"metadata,omitzero" default:"[]"`
	Service             *bool              `json:"service,omitzero" default:"false"`
	MaxTaskFailures     *int64             `json:"max_task_failures,omitzero" default:"1"`
	Production          *bool              `json:"production,omitzero" default:"false"`
	Priority            *int64             `json:"priority,omitzero" default:"0"`
	HealthCheckConfig   *HealthCheckConfig `json:"health_check_config,omitzero" default:"{}"`
	Lifecycle           *LifecycleConfig   `json:"lifecycle,omitzero" default:"{\"http\":{}}"`
	TaskLinks           map[string]string  `json:"task_links,omitzero"`
	ExecutorConfig      *ExecutorConfig    `json:"executor_config,omitzero" default:"{}"`
	EnableHooks         *bool              `json:"enable_hooks,omitzero" default:"false"`
	PartitionPolicy     *PartitionPolicy   `json:"partition_policy,omitzero"`
	SlaPolicy           *SlaPolicy         `json:"sla_policy,omitzero"`
	Container           *Container         `json:"container,omitzero"`

	// Templates are strings written for attributes that are not strings
	// (priority: "{{instances}}"), by path relative to the job
	// ("task.processes[0].max_failures"). pystachio coerces them once they
	// are interpolated; Parse sets the attribute to the coerced value when
	// the client can compute it, and Validate checks them.
	Templates map[string]string `json:"-"`
}

// Task is Thermos' Task: the processes one instance runs, and their plan.
type Task struct {
	Name             *string      `json:"name,omitzero" default:"\"{{processes[0].name}}\""`
	Processes        []Process    `json:"processes,omitzero"`
	Constraints      []Constraint `json:"constraints,omitzero" default:"[]"`
	Resources        *Resources   `json:"resources,omitzero"`
	MaxFailures      *int64       `json:"max_failures,omitzero" default:"1"`
	MaxConcurrency   *int64       `json:"max_concurrency,omitzero" default:"0"`
	FinalizationWait *int64       `json:"finalization_wait,omitzero" default:"30"`
	User             *string      `json:"user,omitzero"`
}

// Process is Thermos' Process. Its cmdline runs as `/bin/bash -c CMDLINE`.
type Process struct {
	Cmdline *string `json:"cmdline,omitzero" aurora:"required"`
	Name    *string `json:"name,omitzero" aurora:"required"`
	// Resources is reserved by Thermos and unused; Aurora's schema accepts it.
	Resources   *Resources `json:"resources,omitzero"`
	MaxFailures *int64     `json:"max_failures,omitzero" default:"1"`
	Daemon      *bool      `json:"daemon,omitzero" default:"false"`
	Ephemeral   *bool      `json:"ephemeral,omitzero" default:"false"`
	MinDuration *int64     `json:"min_duration,omitzero" default:"5"`
	Final       *bool      `json:"final,omitzero" default:"false"`
	Logger      *Logger    `json:"logger,omitzero"`
}

// Resources is a task's footprint. RAM and disk are bytes.
type Resources struct {
	CPU  *float64 `json:"cpu,omitzero" aurora:"required"`
	RAM  *int64   `json:"ram,omitzero" aurora:"required"`
	Disk *int64   `json:"disk,omitzero" aurora:"required"`
	GPU  *int64   `json:"gpu,omitzero" default:"0"`
}

// Constraint orders processes: each runs after the one before it in Order
// finished successfully.
type Constraint struct {
	Order []string `json:"order,omitzero" aurora:"required"`
}

// Logger says where a process's stdout and stderr go.
type Logger struct {
	Destination *string       `json:"destination,omitzero" default:"\"file\""`
	Mode        *string       `json:"mode,omitzero" default:"\"standard\""`
	Rotate      *RotatePolicy `json:"rotate,omitzero"`
}

// RotatePolicy bounds rotated logs (used when Logger.Mode is "rotate").
type RotatePolicy struct {
	LogSize *int64 `json:"log_size,omitzero" default:"104857600"`
	Backups *int64 `json:"backups,omitzero" default:"5"`
}

// UpdateConfig controls rolling updates.
type UpdateConfig struct {
	BatchSize              *int64               `json:"batch_size,omitzero" default:"1"`
	WatchSecs              *int64               `json:"watch_secs,omitzero" default:"45"`
	MaxPerShardFailures    *int64               `json:"max_per_shard_failures,omitzero" default:"0"`
	MaxTotalFailures       *int64               `json:"max_total_failures,omitzero" default:"0"`
	RollbackOnFailure      *bool                `json:"rollback_on_failure,omitzero" default:"true"`
	WaitForBatchCompletion *bool                `json:"wait_for_batch_completion,omitzero" default:"false"`
	PulseIntervalSecs      *int64               `json:"pulse_interval_secs,omitzero"`
	SlaAware               *bool                `json:"sla_aware,omitzero" default:"false"`
	UpdateStrategy         *QueueUpdateStrategy `json:"update_strategy,omitzero"`
}

// QueueUpdateStrategy is the only form of update_strategy that loads from
// JSON: Aurora's other strategies (batch, variable batch) do not.
type QueueUpdateStrategy struct {
	BatchSize *int64 `json:"batch_size,omitzero" default:"1"`
}

// HealthCheckConfig controls a task's health checks.
type HealthCheckConfig struct {
	HealthChecker           *HealthCheckerConfig `json:"health_checker,omitzero" default:"{\"http\":{}}"`
	InitialIntervalSecs     *float64             `json:"initial_interval_secs,omitzero" default:"15.0"`
	IntervalSecs            *float64             `json:"interval_secs,omitzero" default:"10.0"`
	MaxConsecutiveFailures  *int64               `json:"max_consecutive_failures,omitzero" default:"0"`
	MinConsecutiveSuccesses *int64               `json:"min_consecutive_successes,omitzero" default:"1"`
	TimeoutSecs             *float64             `json:"timeout_secs,omitzero" default:"1.0"`
}

// HealthCheckerConfig picks an HTTP or a shell health check.
type HealthCheckerConfig struct {
	HTTP  *HTTPHealthChecker  `json:"http,omitzero"`
	Shell *ShellHealthChecker `json:"shell,omitzero"`
}

// HTTPHealthChecker checks the task's "health" port over HTTP.
type HTTPHealthChecker struct {
	Endpoint             *string `json:"endpoint,omitzero" default:"\"/health\""`
	ExpectedResponse     *string `json:"expected_response,omitzero" default:"\"ok\""`
	ExpectedResponseCode *int64  `json:"expected_response_code,omitzero" default:"0"`
}

// ShellHealthChecker runs a command; non-zero exit is unhealthy.
type ShellHealthChecker struct {
	ShellCommand *string `json:"shell_command,omitzero" aurora:"required"`
}

// LifecycleConfig configures graceful shutdown. An absent lifecycle means the
// default HTTP lifecycle; an empty one ({}) disables it.
type LifecycleConfig struct {
	HTTP *HTTPLifecycleConfig `json:"http,omitzero"`
}

// HTTPLifecycleConfig names the endpoints POSTed to on shutdown.
type HTTPLifecycleConfig struct {
	Port                     *string `json:"port,omitzero" default:"\"health\""`
	GracefulShutdownEndpoint *string `json:"graceful_shutdown_endpoint,omitzero" default:"\"/quitquitquit\""`
	ShutdownEndpoint         *string `json:"shutdown_endpoint,omitzero" default:"\"/abortabortabort\""`
	GracefulShutdownWaitSecs *int64  `json:"graceful_shutdown_wait_secs,omitzero" default:"5"`
	ShutdownWaitSecs         *int64  `json:"shutdown_wait_secs,omitzero" default:"5"`
}

// Announcer enables ZooKeeper ServerSet announcements.
type Announcer struct {
	PrimaryPort *string           `json:"primary_port,omitzero" default:"\"http\""`
	Portmap     map[string]string `json:"portmap,omitzero" default:"{\"aurora\":\"{{primary_port}}\"}"`
	ZkPath      *string           `json:"zk_path,omitzero"`
}

// Metadata is a key/value pair shown by the scheduler.
type Metadata struct {
	Key   *string `json:"key,omitzero" aurora:"required"`
	Value *string `json:"value,omitzero" aurora:"required"`
}

// PartitionPolicy says what to do with tasks on a partitioned agent.
type PartitionPolicy struct {
	Reschedule *bool  `json:"reschedule,omitzero" default:"true"`
	DelaySecs  *int64 `json:"delay_secs,omitzero" default:"0"`
}

// ExecutorConfig names the executor that runs the task.
type ExecutorConfig struct {
	Name *string `json:"name,omitzero" default:"\"AuroraExecutor\""`
	Data *string `json:"data,omitzero" default:"\"\""`
}

// Container is the container the processes run in. Only the Docker form
// ({"docker": {...}}) loads from JSON.
type Container struct {
	Docker *Docker `json:"docker,omitzero"`
}

// Docker runs the task's processes in a Docker image.
type Docker struct {
	Image      *string     `json:"image,omitzero" aurora:"required"`
	Parameters []Parameter `json:"parameters,omitzero" default:"[]"`
}

// Parameter is one `docker run` parameter.
type Parameter struct {
	Name  *string `json:"name,omitzero" aurora:"required"`
	Value *string `json:"value,omitzero" aurora:"required"`
}

// SlaPolicy is the only SLA policy that loads from JSON,
// CoordinatorSlaPolicy: Aurora's sla_policy is Choice([CoordinatorSlaPolicy,
// CountSlaPolicy, PercentageSlaPolicy]), and the Choice, trying the
// coordinator first, does not catch the unknown attribute (count,
// percentage, duration_secs) that fails it.
type SlaPolicy struct {
	CoordinatorURL *string `json:"coordinator_url,omitzero" aurora:"required"`
	StatusKey      *string `json:"status_key,omitzero" default:"\"drain\""`
}

// schemaNames are pystachio's class names, used in its messages.
var schemaNames = map[string]string{
	"Job":                 "MesosJob",
	"HTTPHealthChecker":   "HttpHealthChecker",
	"HTTPLifecycleConfig": "HttpLifecycleConfig",
	"SlaPolicy":           "CoordinatorSlaPolicy",
}

// ProcessByName returns the process whose name attribute is name (as
// written, not interpolated).
func (t *Task) ProcessByName(name string) (*Process, bool) {
	if t == nil {
		return nil, false
	}
	for i := range t.Processes {
		if p := &t.Processes[i]; p.Name != nil && *p.Name == name {
			return p, true
		}
	}
	return nil, false
}

// IsFinal reports whether p runs in the finalization stage (default false).
func (p *Process) IsFinal() bool { return p.Final != nil && *p.Final }

// IsDaemon reports whether p is rerun after success (default false).
func (p *Process) IsDaemon() bool { return p.Daemon != nil && *p.Daemon }

// IsEphemeral reports whether p's outcome is ignored for the task's (default
// false).
func (p *Process) IsEphemeral() bool { return p.Ephemeral != nil && *p.Ephemeral }

// InstanceCount is the number of instances (default 1).
func (j *Job) InstanceCount() int64 {
	if j.Instances == nil {
		return 1
	}
	return *j.Instances
}

// IsService reports whether the job is a service (default false).
func (j *Job) IsService() bool { return j.Service != nil && *j.Service }

// Key returns "cluster/role/environment/name", each part interpolated the
// way Aurora does (the name defaults to the task's name, which defaults to
// the first process's name). A missing part is empty.
func (j Job) Key() string {
	return analyze(&j, "").key()
}

// key is Job.Key of the analysed job.
func (a *analysis) key() string {
	return a.str(a.root, "cluster") + "/" + a.str(a.root, "role") + "/" +
		a.str(a.root, "environment") + "/" + a.str(a.root, "name")
}

// JobName returns the job's name as Aurora sees it: interpolated, and
// "{{task.name}}" → the task's name → the first process's name by default.
func (j Job) JobName() string {
	a := analyze(&j, "")
	return a.str(a.root, "name")
}
