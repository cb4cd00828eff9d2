package aurora

import (
	"fmt"
	"math"
	"math/big"
	"reflect"
	"sort"
	"strings"
	"unicode"
)

// Validate checks j against every rule by which `aurora job create
// --read-json` (Aurora 0.22) refuses a job, and returns nil or a
// *ValidationError (errors.Is(err, ErrClient)) listing all problems, with
// paths relative to the job and Aurora's own messages. Rules of the
// scheduler are in ValidateScheduler.
func (j Job) Validate() error {
	ps, _ := validateJob(&j, "")
	return newError(ErrClient, ps)
}

// Validate checks every job of the document as Job.Validate does, with
// paths rooted in the document, and that no two jobs share a key.
func (d *Document) Validate() error {
	var all []Problem
	keys := map[string]int{}
	for i := range d.Jobs {
		prefix := d.prefix(i)
		ps, key := validateJob(&d.Jobs[i], prefix)
		all = append(all, ps...)
		if first, dup := keys[key]; dup && d.List {
			all = append(all, Problem{Path: prefix, Message: fmt.Sprintf(
				"Multiple jobs match, please disambiguate by specifying a job key. (%s is also jobs[%d])", key, first)})
		} else if !dup {
			keys[key] = i
		}
	}
	return newError(ErrClient, all)
}

func (d *Document) prefix(i int) string {
	if d.List {
		return index("jobs", i)
	}
	return ""
}

// ValidateDocument parses data and validates every job in it: the error is
// the first stage that fails (ErrSchema, then ErrClient).
func ValidateDocument(data []byte) (*Document, error) {
	d, err := ParseDocument(data)
	if err != nil {
		return nil, err
	}
	return d, d.Validate()
}

// validator holds one job under validation.
type validator struct {
	j      *Job      // as written
	d      Job       // with defaults
	a      *analysis // interpolated
	prefix string
	ps     problems
	byPath map[string]*node
}

// validateJob returns the job's problems and its key (Job.Key, from the
// analysis validation made anyway).
func validateJob(j *Job, prefix string) ([]Problem, string) {
	a := analyze(j, prefix)
	nodes := 0
	a.root.walk(func(*node) { nodes++ }) // sized once: 20k processes are 200k nodes
	v := &validator{j: j, d: j.Defaults(), a: a, prefix: prefix, byPath: make(map[string]*node, nodes)}
	v.a.root.walk(func(n *node) {
		if _, ok := v.byPath[n.path]; !ok { // a map key shares its value's path
			v.byPath[n.path] = n
		}
	})
	v.structure()
	v.cron()
	v.identifiers()
	v.resources()
	v.updateConfig()
	v.announce()
	v.enums()
	v.container()
	v.slaPolicy()
	v.limits()
	v.mustache()
	v.processes()
	v.plan()
	return v.ps.list, v.a.key()
}

// at is the document path of a path relative to the job.
func (v *validator) at(rel string) string {
	if rel == "" {
		return v.prefix
	}
	return join(v.prefix, rel)
}

// value is the interpolated string at a path relative to the job.
func (v *validator) value(rel string) (string, bool) {
	n := v.byPath[v.at(rel)]
	if n == nil || n.kind != leafNode {
		return "", false
	}
	if !n.isString {
		return n.text, true
	}
	return v.a.leaf(n).out, true
}

func (v *validator) name() string { return v.a.str(v.a.root, "name") }

// structure: AuroraConfig.validate_job, and pystachio's Required checks.
func (v *validator) structure() {
	j := v.j
	if j.Cluster == nil {
		v.ps.add(v.at("cluster"), "Cluster required for job \"%s\"", v.name())
	}
	if j.Task == nil {
		v.ps.add(v.at("task"), "Task required for job \"%s\"", v.name())
	}
	if j.Role == nil {
		v.ps.add(v.at("role"), "Role required for job \"%s\"", v.name())
	}
	if j.Task != nil && len(j.Task.Processes) == 0 {
		// Absent: Aurora's check. Empty: Aurora would run a task that does
		// nothing (or fail to name it); nix-aurora refuses both.
		v.ps.add(v.at("task.processes"), "Processes required for task on job \"%s\"", v.name())
	}
	if j.Environment == nil {
		v.ps.add(v.at("environment"), "MesosJob[environment] is required.")
	}
	requiredFields(reflect.ValueOf(j).Elem(), v.prefix, &v.ps)
}

// requiredFields reports absent Required(...) attributes below rv.
func requiredFields(rv reflect.Value, path string, ps *problems) {
	switch rv.Kind() {
	case reflect.Pointer:
		if !rv.IsNil() {
			requiredFields(rv.Elem(), path, ps)
		}
	case reflect.Slice:
		if rv.Type().Elem().Kind() == reflect.Struct {
			for i := 0; i < rv.Len(); i++ {
				requiredFields(rv.Index(i), index(path, i), ps)
			}
		}
	case reflect.Struct:
		for _, f := range fieldsOf(rv.Type()) {
			fv := rv.Field(f.index)
			if f.required && fv.IsNil() {
				ps.add(join(path, f.name), "%s[%s] is required.", schemaName(rv.Type()), f.name)
				continue
			}
			requiredFields(fv, join(path, f.name), ps)
		}
	}
}

var cronCollisionPolicies = []string{"KILL_EXISTING", "CANCEL_NEW", "RUN_OVERLAP"}

func (v *validator) cron() {
	if v.j.CronSchedule != nil {
		v.ps.add(v.at("cron_schedule"), `Cron jobs may only be scheduled with "aurora cron schedule" command`)
	}
	if p, ok := v.value("cron_collision_policy"); ok && !contains(cronCollisionPolicies, strings.ToUpper(p)) {
		v.ps.add(v.at("cron_collision_policy"), "Invalid CronCollisionPolicy type: %s", p)
	}
}

// isIdentifier is Aurora's GOOD_IDENTIFIER_PATTERN `^[\w\-\.]+$`; the client
// matches \w as Python 3 does (any letter or digit), the scheduler as Java
// does (ASCII).
func isIdentifier(s string, ascii bool) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case r == '-' || r == '.' || r == '_':
		case ascii && ('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9'):
		case !ascii && (unicode.IsLetter(r) || unicode.IsNumber(r)):
		default:
			return false
		}
	}
	return true
}

// identifiers: config/thrift.py assert_valid_field, on interpolated values.
func (v *validator) identifiers() {
	for _, attr := range []string{"role", "environment", "name"} {
		n := v.a.root.fields[attr]
		if n == nil {
			continue
		}
		res := v.a.leaf(n)
		if n.defaulted && len(res.unbound) > 0 {
			continue // the default names a task or process that is missing: reported there
		}
		if !isIdentifier(res.out, false) {
			v.ps.add(v.at(attr), "Invalid %s '%s'", attr, res.out)
		}
	}
}

const mib = 1024 * 1024

// floorDiv is Python's // on integers.
func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// resources: config/thrift.py convert.
func (v *validator) resources() {
	t := v.j.Task
	if t == nil {
		return
	}
	r := t.Resources
	if r == nil {
		v.ps.add(v.at("task.resources"), "Task must specify resources!")
		return
	}
	if r.CPU == nil || r.RAM == nil || r.Disk == nil {
		return // Resources[...] is required.
	}
	if *r.RAM == 0 || *r.Disk == 0 {
		v.ps.add(v.at("task.resources"), "Must specify ram and disk resources, got ram:%d disk:%d", *r.RAM, *r.Disk)
		return
	}
	ramMb, diskMb := floorDiv(*r.RAM, mib), floorDiv(*r.Disk, mib)
	if *r.CPU <= 0 || ramMb <= 0 || diskMb <= 0 {
		v.ps.add(v.at("task.resources"),
			"Task has invalid resources.  cpu/ramMb/diskMb must all be positive: cpu:%s ramMb:%d diskMb:%d",
			pyFloat(*r.CPU), ramMb, diskMb)
	}
}

func (v *validator) dedicated() bool {
	_, ok := v.j.Constraints["dedicated"]
	return ok
}

// updateConfig: client/config.py _validate_update_config (with defaults).
func (v *validator) updateConfig() {
	d := v.d
	size := *d.Instances
	u, h := d.UpdateConfig, d.HealthCheckConfig
	maxFailures := *u.MaxTotalFailures
	if maxFailures >= size {
		v.ps.add(v.at("update_config.max_total_failures"),
			"max_total_failures in update_config must be lesser than the job size. "+
				"Based on your job size (%d) you should use max_total_failures <= %s.",
			size, new(big.Int).Sub(big.NewInt(size), big.NewInt(1))) // exact where size-1 would wrap
	}
	if v.dedicated() {
		if threshold := int64(math.Floor(float64(size) * 0.02)); maxFailures < threshold {
			v.ps.add(v.at("update_config.max_total_failures"),
				"Since this is a dedicated job, you must set your max_total_failures in your update "+
					"configuration to no less than 2%% of your job size. "+
					"Based on your job size (%d) you should use max_total_failures >= %d.", size, threshold)
		}
	}
	negative := func(rel, attr, value string, isNegative bool) {
		if isNegative {
			v.ps.add(v.at(rel), "Invalid value (%s) specified for %s. Value cannot be less than 0.", value, attr)
		}
	}
	negative("update_config.watch_secs", "watch_secs", fmt.Sprint(*u.WatchSecs), *u.WatchSecs < 0)
	negative("health_check_config.max_consecutive_failures", "max_consecutive_failures",
		fmt.Sprint(*h.MaxConsecutiveFailures), *h.MaxConsecutiveFailures < 0)
	negative("health_check_config.min_consecutive_successes", "min_consecutive_successes",
		fmt.Sprint(*h.MinConsecutiveSuccesses), *h.MinConsecutiveSuccesses < 0)
	negative("health_check_config.initial_interval_secs", "initial_interval_secs",
		pyFloat(*h.InitialIntervalSecs), *h.InitialIntervalSecs < 0)
	negative("health_check_config.interval_secs", "interval_secs",
		pyFloat(*h.IntervalSecs), *h.IntervalSecs < 0)
}

// isPyInt reports whether Python's int(s) accepts s (ASCII digits, an
// optional sign, surrounding whitespace).
func isPyInt(s string) bool {
	s = strings.TrimSpace(s)
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// announce: client/config.py _validate_announce_configuration.
func (v *validator) announce() {
	a := v.d.Announce
	if a == nil || v.dedicated() {
		return
	}
	keys := make([]string, 0, len(a.Portmap))
	for k := range a.Portmap {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if isPyInt(a.Portmap[k]) {
			v.ps.add(mapKey(v.at("announce.portmap"), k), "Job must be dedicated in order to specify static ports!")
		}
	}
}

var (
	loggerDestinations = []string{"file", "console", "both", "none"}
	loggerModes        = []string{"standard", "rotate"}
)

// enums: pystachio's Enum types.
func (v *validator) enums() {
	if v.j.Task == nil {
		return
	}
	for i := range v.j.Task.Processes {
		base := index("task.processes", i) + ".logger"
		if d, ok := v.value(base + ".destination"); ok && !contains(loggerDestinations, d) {
			v.ps.add(v.at(base+".destination"), "LoggerDestination only accepts the following values: %s",
				strings.Join(loggerDestinations, ", "))
		}
		if m, ok := v.value(base + ".mode"); ok && !contains(loggerModes, m) {
			v.ps.add(v.at(base+".mode"), "LoggerMode only accepts the following values: %s",
				strings.Join(loggerModes, ", "))
		}
	}
}

// container: config/thrift.py create_container_config.
func (v *validator) container() {
	if c := v.j.Container; c != nil && c.Docker == nil {
		v.ps.add(v.at("container"), "If a container is specified it must set one type.")
	}
}

// slaPolicy: exactly one of Aurora's three policies.
func (v *validator) slaPolicy() {
	s := v.j.SlaPolicy
	if s == nil {
		return
	}
	count := s.Count != nil
	percentage := s.Percentage != nil
	coordinator := s.CoordinatorURL != nil || s.StatusKey != nil
	forms := 0
	for _, f := range []bool{count, percentage, coordinator} {
		if f {
			forms++
		}
	}
	path := v.at("sla_policy")
	switch {
	case forms != 1 || (coordinator && s.DurationSecs != nil):
		v.ps.add(path, "sla_policy must be exactly one of CountSlaPolicy {count, duration_secs}, "+
			"PercentageSlaPolicy {percentage, duration_secs} or CoordinatorSlaPolicy {coordinator_url, status_key}")
	case count && s.DurationSecs == nil:
		v.ps.add(join(path, "duration_secs"), "CountSlaPolicy[duration_secs] is required.")
	case percentage && s.DurationSecs == nil:
		v.ps.add(join(path, "duration_secs"), "PercentageSlaPolicy[duration_secs] is required.")
	case coordinator && s.CoordinatorURL == nil:
		v.ps.add(join(path, "coordinator_url"), "CoordinatorSlaPolicy[coordinator_url] is required.")
	}
}

// limits: config/thrift.py constraints_to_thrift.
func (v *validator) limits() {
	keys := make([]string, 0, len(v.j.Constraints))
	for k := range v.j.Constraints {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		rel := mapKey("constraints", k)
		c, _ := v.value(rel)
		if rest, ok := strings.CutPrefix(c, "limit:"); ok && !isPyInt(rest) {
			v.ps.add(v.at(rel), "%s is not a valid limit value, must be integer", c)
		}
	}
}

// mustache: every string the author wrote must interpolate.
func (v *validator) mustache() {
	v.a.root.walk(func(n *node) {
		if n.kind != leafNode || !n.isString || n.defaulted {
			return
		}
		for _, msg := range v.a.checkLeaf(n) {
			v.ps.add(n.path, "%s", msg)
		}
	})
}

// validProcessName is Thermos' VALID_PROCESS_NAME_RE `^[^./][^/]*$`.
func validProcessName(name string) bool {
	return name != "" && name[0] != '.' && !strings.Contains(name, "/")
}

// processes: Thermos' name check, and unique names.
func (v *validator) processes() {
	if v.j.Task == nil {
		return
	}
	seen := map[string]int{}
	for i, p := range v.j.Task.Processes {
		if p.Name == nil {
			continue
		}
		rel := index("task.processes", i) + ".name"
		name, _ := v.value(rel)
		if !validProcessName(name) {
			v.ps.add(v.at(rel), "Invalid process name: %s", name)
		}
		if first, dup := seen[name]; dup {
			v.ps.add(v.at(rel), "Duplicate process name %s (also task.processes[%d]): Thermos would run only one of them", name, first)
		} else {
			seen[name] = i
		}
	}
}
