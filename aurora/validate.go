package aurora

import (
	"fmt"
	"math"
	"math/big"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/nix-aurora/nix-aurora/mustache"
)

// Validate checks j against every rule by which `aurora job create
// --read-json` (Aurora 0.22) refuses a job, and returns nil or a
// *ValidationError (errors.Is(err, ErrClient)) listing all problems, with
// paths relative to the job and Aurora's own messages. Rules of the
// scheduler are in ValidateScheduler.
func (j Job) Validate() error {
	return newError(ErrClient, newValidator(&j, "").ps.list)
}

// Validate checks every job of the document as Job.Validate does, with
// paths rooted in the document, and that no two jobs share a key.
func (d *Document) Validate() error {
	var all []Problem
	keys := map[string]int{}
	d.checked = make([]*validator, len(d.Jobs))
	for i := range d.Jobs {
		prefix := d.prefix(i)
		v := newValidator(&d.Jobs[i], prefix)
		d.checked[i] = v
		key := v.a.key()
		all = append(all, v.ps.list...)
		if first, dup := keys[key]; dup && d.List {
			all = append(all, Problem{Path: prefix, Message: fmt.Sprintf(
				"Multiple jobs match, please disambiguate by specifying a job key. (%s is also jobs[%d])", key, first)})
		} else if !dup {
			keys[key] = i
		}
	}
	return newError(ErrClient, all)
}

// Warnings returns what Aurora accepts but the author may not mean: a
// value the client coerces to its attribute's type ("3" for an Integer),
// duplicate process names (Thermos runs the last), a task without
// processes, an order naming no process of the task (ignored). They never
// make Validate fail.
func (d *Document) Warnings() []Problem {
	ws := append([]Problem(nil), d.warnings...)
	for i := range d.Jobs {
		ws = append(ws, d.validator(i).warn.list...)
	}
	return ws
}

// validator is job i's validator: Validate's, or a new one when Validate
// has not run (or the jobs have changed in number since).
func (d *Document) validator(i int) *validator {
	if v := d.validated(i); v != nil {
		return v
	}
	return newValidator(&d.Jobs[i], d.prefix(i))
}

// analysis is job i's analysis: Validate's, or a new one.
func (d *Document) analysis(i int) *analysis {
	if v := d.validated(i); v != nil {
		return v.a
	}
	return analyze(&d.Jobs[i], d.prefix(i))
}

func (d *Document) validated(i int) *validator {
	if len(d.checked) == len(d.Jobs) && d.checked[i].j == &d.Jobs[i] {
		return d.checked[i]
	}
	return nil
}

// Warnings is Document.Warnings for one job, without the parser's.
func (j Job) Warnings() []Problem {
	return newValidator(&j, "").warn.list
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
	warn   problems
	byPath map[string]*mustache.Value
}

// validateJob returns the job's problems and its key (Job.Key, from the
// analysis validation made anyway).
func newValidator(j *Job, prefix string) *validator {
	a := analyze(j, prefix)
	nodes := 0
	a.root.Walk(func(*mustache.Value) { nodes++ }) // sized once: 20k processes are 200k nodes
	v := &validator{j: j, d: j.Defaults(), a: a, prefix: prefix, byPath: make(map[string]*mustache.Value, nodes)}
	v.a.root.Walk(func(n *mustache.Value) {
		if _, ok := v.byPath[n.Path]; !ok { // a map key shares its value's path
			v.byPath[n.Path] = n
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
	v.limits()
	v.mustache()
	v.processes()
	v.plan()
	v.apiFields()
	return v
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
	if n == nil || n.Kind != mustache.Scalar {
		return "", false
	}
	return v.a.client.Value(n).Out, true
}

// taskValue is value for a string of the task as convert checks its names
// and plan: with mesos.instance and mesos.hostname bound.
func (v *validator) taskValue(rel string) (string, bool) {
	n := v.byPath[v.at(rel)]
	if n == nil || n.Kind != mustache.Scalar {
		return "", false
	}
	return v.a.named.Value(n).Out, true
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
	switch {
	case j.Task != nil && j.Task.Processes == nil:
		v.ps.add(v.at("task.processes"), "Processes required for task on job \"%s\"", v.name())
	case j.Task != nil && len(j.Task.Processes) == 0:
		v.warn.add(v.at("task.processes"), "the task has no processes: Aurora accepts it, and the task does nothing")
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

// cron: the client's cron_collision_policy. A cron schedule is no
// rejection: the client loads a cron job, and only
// the command differs (`aurora job create` refuses it, `aurora cron
// schedule` takes it; see Job.IsCron).
func (v *validator) cron() {
	if p, ok := v.value("cron_collision_policy"); ok && !slices.Contains(cronCollisionPolicies, strings.ToUpper(p)) {
		v.ps.add(v.at("cron_collision_policy"), "Invalid CronCollisionPolicy type: %s", p)
	}
}

// isIdentifier is Aurora's GOOD_IDENTIFIER_PATTERN `^[\w\-\.]+$`; \w is
// ASCII both in the client (Python 2.7's re) and in the scheduler (Java).
func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '-' || c == '.' || c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// identifiers: config/thrift.py assert_valid_field, on interpolated values
// (before the node binds anything: a name holding {{mesos.instance}} is
// invalid).
func (v *validator) identifiers() {
	if v.j.Task == nil || v.j.Task.Processes == nil {
		return // the default name names a missing task or process: reported there
	}
	for _, attr := range []string{"role", "environment", "name"} {
		n := v.a.root.Fields[attr]
		if n == nil {
			continue
		}
		if out := v.a.client.Value(n).Out; !isIdentifier(out) {
			v.ps.add(v.at(attr), "Invalid %s '%s'", attr, out)
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
			pyRepr(*r.CPU), ramMb, diskMb)
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
		pyRepr(*h.InitialIntervalSecs), *h.InitialIntervalSecs < 0)
	negative("health_check_config.interval_secs", "interval_secs",
		pyRepr(*h.IntervalSecs), *h.IntervalSecs < 0)
}

// announce: client/config.py _validate_announce_configuration, and
// PortResolver.resolve (AuroraConfig.ports), on interpolated values.
func (v *validator) announce() {
	a := v.d.Announce
	if a == nil {
		return
	}
	keys := make([]string, 0, len(a.Portmap))
	for k := range a.Portmap {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	portmap := make(map[string]string, len(keys))
	static := map[string]bool{}
	for _, k := range keys {
		portmap[k], _ = v.value(mapKey("announce.portmap", k))
		if digits, ok := pyIntText(portmap[k]); ok {
			static[k] = true
			portmap[k] = digits // int(): never the name of a port
		}
	}
	for _, k := range keys {
		// resolve_one: follow names to a number or an unknown name.
		visited := map[string]bool{}
		root := portmap[k]
		for _, named := portmap[root]; named && !static[k]; _, named = portmap[root] {
			visited[root] = true
			if visited[portmap[root]] {
				v.ps.add(v.at("announce.portmap"), "Found cycle in portmap!")
				goto dedicated
			}
			root = portmap[root]
		}
	}
dedicated:
	if v.dedicated() {
		return
	}
	for _, k := range keys {
		if static[k] {
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
		if d, ok := v.value(base + ".destination"); ok && !slices.Contains(loggerDestinations, d) {
			v.ps.add(v.at(base+".destination"), "LoggerDestination only accepts the following values: %s",
				strings.Join(loggerDestinations, ", "))
		}
		if m, ok := v.value(base + ".mode"); ok && !slices.Contains(loggerModes, m) {
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
		rest, ok := strings.CutPrefix(c, "limit:")
		if !ok {
			continue
		}
		digits, ok := pyIntText(rest)
		if !ok {
			v.ps.add(v.at(rel), "%s is not a valid limit value, must be integer", c)
			continue
		}
		v.int32Field(rel, "LimitConstraint.limit", digits)
	}
}

// apiFields: the client encodes these as the i32 of Aurora's API
// (api.thrift: JobConfiguration.instanceCount, TaskConfig.priority and
// maxTaskFailures); a value out of range fails there.
func (v *validator) apiFields() {
	for _, f := range []struct{ rel, field string }{
		{"instances", "JobConfiguration.instanceCount"},
		{"priority", "TaskConfig.priority"},
		{"max_task_failures", "TaskConfig.maxTaskFailures"},
	} {
		if text, ok := v.value(f.rel); ok {
			v.int32Field(f.rel, f.field, text)
		}
	}
}

func (v *validator) int32Field(rel, field, digits string) {
	n, ok := new(big.Int).SetString(digits, 10)
	if ok && (!n.IsInt64() || n.Int64() < math.MinInt32 || n.Int64() > math.MaxInt32) {
		v.ps.add(v.at(rel), "%s does not fit the 32-bit integer of Aurora's API (%s): the client fails to encode it", digits, field)
	}
}

// mustache: every string (and template) of the job must interpolate.
func (v *validator) mustache() {
	// A default naming a missing task or process is reported as missing.
	noTask := v.j.Task == nil || v.j.Task.Processes == nil
	v.a.root.Walk(func(n *mustache.Value) {
		if n.Kind != mustache.Scalar || !n.Template || n.Defaulted && noTask {
			return
		}
		for _, msg := range v.a.checkLeaf(n) {
			v.ps.add(n.Path, "%s", msg)
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
		name, _ := v.taskValue(rel)
		if !validProcessName(name) {
			v.ps.add(v.at(rel), "Invalid process name: %s", name)
		}
		if first, dup := seen[name]; dup {
			// Aurora accepts it; Thermos keeps the last process of a name.
			v.warn.add(v.at(rel), "duplicate process name %s (also task.processes[%d]): Thermos runs only the last of them", name, first)
		}
		seen[name] = i
	}
}
