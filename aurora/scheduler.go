package aurora

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/nix-aurora/nix-aurora/mustache"
)

// The scheduler's settings its rules depend on, at the scheduler's default
// command-line flags (Aurora 0.22). A cluster started with other flags
// accepts or refuses more: these rules are the defaults' and no more.
const (
	// maxIdentifierLength bounds role, environment, job name and tier.
	maxIdentifierLength = 255
	// maxTasksPerJob is -max_tasks_per_job.
	maxTasksPerJob = 4000
	// auroraExecutor is the only executor without -custom_executor_config.
	auroraExecutor = "AuroraExecutor"
	// defaultTier is the default of the built-in tier configuration
	// (-tier_config unset).
	defaultTier = "preemptible"
)

// allowedEnvironments is -allowed_job_environments; environmentPattern is
// how the scheduler prints it.
var (
	allowedEnvironments = regexp.MustCompile(`^(prod|devel|test|staging[0-9]*)$`)
	environmentPattern  = `^(prod|devel|test|staging\d*)$`
)

// tiers are the built-in tiers, true for a production one (neither
// preemptible nor revocable). Only a production tier may carry an SLA policy
// while -sla_aware_kill_non_prod is false.
var tiers = map[string]bool{"preferred": true, "preemptible": false, "revocable": false}

// ValidateScheduler checks j against the rules by which Aurora's scheduler
// refuses a job the client sent (ConfigurationManager.validateAndPopulate,
// the instance limit of createJob and scheduleCronJob, and the cron schedule
// parser of a cron job), at the scheduler's default flags. It returns nil or
// a *ValidationError matching ErrScheduler. Unlike the scheduler, which stops
// at the first, it reports every problem. Not checked: what depends on the
// cluster's state (quota, a job that already exists) or on the user running
// the client (the job's owner).
//
// The scheduler sees only what the client sent: run it on a job that passed
// Validate.
func (j Job) ValidateScheduler() error {
	return newError(ErrScheduler, schedulerProblems(&j, "", analyze(&j, "")))
}

// ValidateScheduler checks every job of the document as Job.ValidateScheduler.
func (d *Document) ValidateScheduler() error {
	var all []Problem
	for i := range d.Jobs {
		all = append(all, schedulerProblems(&d.Jobs[i], d.prefix(i), d.analysis(i))...)
	}
	return newError(ErrScheduler, all)
}

// ValidateForScheduler is ValidateDocument followed, when every job passes
// the client, by the scheduler's rules: the error is the first stage that
// fails (ErrSchema, ErrClient, then ErrScheduler).
func ValidateForScheduler(data []byte) (*Document, error) {
	d, err := ValidateDocument(data)
	if err != nil {
		return d, err
	}
	return d, d.ValidateScheduler()
}

// IsCron reports whether Aurora's client takes j for a cron job: it has a
// cron_schedule, even an empty one. Such a job is refused by `aurora job
// create` and taken by `aurora cron schedule`, and the reverse.
func (j *Job) IsCron() bool { return j.CronSchedule != nil }

func goodIdentifier(s string) bool {
	return isIdentifier(s) && len(s) <= maxIdentifierLength
}

// sent is the interpolated string the client sends for the attribute at
// steps (struct attributes, map keys) below the job, and whether it is
// present, written or defaulted.
func sent(a *analysis, steps ...string) (string, bool) {
	n := a.root
	for _, s := range steps {
		if n == nil || n.Kind != mustache.Struct && n.Kind != mustache.Map {
			return "", false
		}
		n = n.Fields[s]
	}
	if n == nil || n.Kind != mustache.Scalar {
		return "", false
	}
	if !n.Template {
		return n.Text, true
	}
	return a.client.Value(n).Out, true
}

// scheduler holds one job under the scheduler's rules.
type scheduler struct {
	j      *Job
	a      *analysis
	prefix string
	ps     problems
}

func (s *scheduler) at(rel string) string {
	if rel == "" {
		return s.prefix
	}
	return join(s.prefix, rel)
}

func schedulerProblems(j *Job, prefix string, a *analysis) []Problem {
	s := &scheduler{j: j, a: a, prefix: prefix}
	s.instances()
	s.jobKey()
	s.tier()
	s.executor()
	s.dedicated()
	s.container()
	s.gpu()
	s.slaPolicy()
	s.cron()
	return s.ps.list
}

// instances: validateAndPopulate, then the task limit of createJob and
// scheduleCronJob.
func (s *scheduler) instances() {
	switch n := s.j.InstanceCount(); {
	case n <= 0:
		s.ps.add(s.at("instances"), "Instance count must be positive.")
	case n > maxTasksPerJob:
		s.ps.add(s.at("instances"), "Instance count must be between 1 and %d inclusive.", maxTasksPerJob)
	}
}

// jobKey: JobKeys.isValid (ASCII identifiers of at most 255 characters),
// then the allowed environments.
func (s *scheduler) jobKey() {
	role, _ := sent(s.a, "role")
	env, _ := sent(s.a, "environment")
	name, _ := sent(s.a, "name")
	for _, part := range []struct{ attr, value string }{{"role", role}, {"environment", env}, {"name", name}} {
		if !goodIdentifier(part.value) {
			s.ps.add(s.at(part.attr), "Job key JobKey(role:%s, environment:%s, name:%s) is invalid.", role, env, name)
			break
		}
	}
	if !allowedEnvironments.MatchString(env) {
		s.ps.add(s.at("environment"), "Job environment %s doesn't match: %s", env, environmentPattern)
	}
}

// tierName is the tier the scheduler files the task under.
func (s *scheduler) tierName() string {
	if tier, ok := sent(s.a, "tier"); ok {
		return tier
	}
	return defaultTier
}

// tier: a good identifier, and one of the configured tiers.
func (s *scheduler) tier() {
	tier, ok := sent(s.a, "tier")
	switch {
	case !ok:
	case !goodIdentifier(tier):
		s.ps.add(s.at("tier"), "Tier contains illegal characters: %s", tier)
	default:
		if _, known := tiers[tier]; !known {
			s.ps.add(s.at("tier"), "Invalid tier '%s' in TaskConfig.", tier)
		}
	}
}

// executor: the client always sends an executor config; without
// -custom_executor_config only Thermos is configured.
func (s *scheduler) executor() {
	name, ok := sent(s.a, "executor_config", "name")
	if !ok {
		name = auroraExecutor
	}
	if name != auroraExecutor {
		s.ps.add(s.at("executor_config.name"), "Configuration for executor '%s' doesn't exist.", name)
	}
}

// dedicated: a "dedicated" constraint is one value, "ROLE/..." or "*/...",
// whose ROLE is the job's.
func (s *scheduler) dedicated() {
	if _, ok := s.j.Constraints["dedicated"]; !ok {
		return
	}
	rel := mapKey("constraints", "dedicated")
	value, _ := sent(s.a, "constraints", "dedicated")
	role, _ := sent(s.a, "role")
	if strings.HasPrefix(value, "limit:") {
		s.ps.add(s.at(rel), "A dedicated constraint must be of value type.")
		return
	}
	// The client sends a value constraint as the set of the comma-separated
	// values, after a leading "!" (negation).
	values := uniq(strings.Split(strings.TrimPrefix(value, "!"), ","))
	if len(values) != 1 {
		s.ps.add(s.at(rel), "A dedicated constraint must have exactly one value")
		return
	}
	if owner, _, _ := strings.Cut(values[0], "/"); owner != "*" && owner != role {
		s.ps.add(s.at(rel), "Only %s may use hosts dedicated for that role.", owner)
	}
}

// container: -allowed_container_types is MESOS and -allow_docker_parameters
// false by default. A job without a container runs in the Mesos one.
func (s *scheduler) container() {
	c := s.j.Container
	if c == nil || c.Docker == nil {
		return
	}
	if len(c.Docker.Parameters) > 0 {
		s.ps.add(s.at("container.docker.parameters"), "This scheduler is configured to disallow Docker parameters.")
	}
	s.ps.add(s.at("container.docker"), "This scheduler is not configured to allow the container type DOCKER")
}

// gpu: -allow_gpu_resource is false by default; the client sends a GPU
// resource only when gpu is not 0.
func (s *scheduler) gpu() {
	if t := s.j.Task; t != nil && t.Resources != nil && t.Resources.GPU != nil && *t.Resources.GPU != 0 {
		s.ps.add(s.at("task.resources.gpu"), "GPU resource support is disabled in this cluster.")
	}
}

// slaPolicy: validateSlaPolicy's tier rule. Its rules for Count and
// Percentage policies cannot be reached from JSON: the client never loads
// those (see SlaPolicy), so a coordinator policy is all the scheduler sees.
func (s *scheduler) slaPolicy() {
	if s.j.SlaPolicy == nil {
		return
	}
	tier := s.tierName()
	if production, known := tiers[tier]; known && !production {
		s.ps.add(s.at("sla_policy"), "Tier '%s' does not support SlaPolicy.", tier)
	}
}

// cron: a service may not be a cron job, and a cron job's schedule must
// parse (scheduleCronJob; an empty schedule is a cron job to the client).
func (s *scheduler) cron() {
	if !s.j.IsCron() {
		return
	}
	schedule, _ := sent(s.a, "cron_schedule")
	switch {
	case schedule == "":
		s.ps.add(s.at("cron_schedule"), "Job has an empty cron schedule.")
		return
	case s.j.IsService():
		s.ps.add(s.at("cron_schedule"), "A service task may not be run on a cron schedule")
	}
	if err := parseCrontab(schedule); err != nil {
		s.ps.add(s.at("cron_schedule"), "Invalid cron schedule: %s", schedule)
	}
}

// uniq is the set a thrift ValueConstraint holds.
func uniq(values []string) []string {
	set := map[string]bool{}
	for _, v := range values {
		set[v] = true
	}
	out := make([]string, 0, len(set))
	for v := range set {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// The scheduler's crontab grammar: five fields (minute, hour, day of month,
// month, day of week) separated by whitespace, each a comma-separated list
// of "*", "N", "N-M", "*/S" or "N-M/S" (S > 0, and S < M in a range);
// months and days of week may be named (JAN, MON; any case); Sunday is 0
// only; and either the day of month or the day of week must cover all days.
type cronField struct {
	lo, hi int
	names  []string // names[i] is the value lo+i... for months and days
}

var cronFields = [5]cronField{
	{lo: 0, hi: 59},
	{lo: 0, hi: 23},
	{lo: 1, hi: 31},
	{lo: 1, hi: 12, names: []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}},
	{lo: 0, hi: 6, names: []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}},
}

// javaSpace is Java's \s: the scheduler splits a schedule on it.
func javaSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\x0b' || r == '\f' || r == '\r'
}

// parseCrontab reports whether the scheduler's parser accepts schedule.
func parseCrontab(schedule string) error {
	fields := strings.FieldsFunc(schedule, javaSpace)
	if len(fields) != len(cronFields) || schedule == "" ||
		javaSpace(rune(schedule[0])) || javaSpace(rune(schedule[len(schedule)-1])) {
		return fmt.Errorf("%q is not five fields", schedule)
	}
	var sets [len(cronFields)]uint64
	for i, f := range cronFields {
		raw := fields[i]
		if f.names != nil {
			// Each name is replaced by its number, in order, anywhere in
			// the component, as the scheduler does.
			raw = strings.ToUpper(raw)
			for k, name := range f.names {
				raw = strings.ReplaceAll(raw, name, strconv.Itoa(f.lo+k))
			}
		}
		for _, comp := range strings.Split(raw, ",") {
			if comp == "" {
				continue
			}
			set, err := f.component(comp)
			if err != nil {
				return err
			}
			sets[i] |= set
		}
		if sets[i] == 0 {
			return fmt.Errorf("field %d is empty", i+1)
		}
	}
	if sets[2] != cronFields[2].all() && sets[4] != cronFields[4].all() {
		return fmt.Errorf("both the day of month and the day of week are restricted")
	}
	return nil
}

func (f cronField) all() uint64 { return f.span(f.lo, f.hi, 1) }

func (f cronField) span(from, to, step int) uint64 {
	var set uint64
	for v := from; v <= to; v += step {
		set |= 1 << v
	}
	return set
}

// cronNumber is Java's Integer.parseInt of ASCII digits (which fails above
// 2^31-1).
func cronNumber(s string) (int, bool) {
	if s == "" || strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 32)
	return int(n), err == nil
}

func (f cronField) component(c string) (uint64, error) {
	bad := fmt.Errorf("cron schedule component %s does not match any known patterns", c)
	in := func(v int) bool { return f.lo <= v && v <= f.hi }
	if c == "*" {
		return f.all(), nil
	}
	if rest, ok := strings.CutPrefix(c, "*/"); ok {
		skip, ok := cronNumber(rest)
		if !ok || skip <= 0 {
			return 0, bad
		}
		return f.span(f.lo, f.hi, skip), nil
	}
	rng, skipText, hasSkip := strings.Cut(c, "/")
	lowText, highText, isRange := strings.Cut(rng, "-")
	if !isRange {
		n, ok := cronNumber(c)
		if !ok || !in(n) {
			return 0, bad
		}
		return 1 << n, nil
	}
	low, ok1 := cronNumber(lowText)
	high, ok2 := cronNumber(highText)
	if !ok1 || !ok2 || low > high || !in(low) || !in(high) {
		return 0, bad
	}
	skip := 1
	if hasSkip {
		var ok bool
		if skip, ok = cronNumber(skipText); !ok || skip <= 0 || skip >= high {
			return 0, bad
		}
	}
	return f.span(low, high, skip), nil
}
