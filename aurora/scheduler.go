package aurora

import (
	"regexp"
	"sort"
	"strings"
)

// maxIdentifierLength is the scheduler's limit on role, environment, job
// name and tier.
const maxIdentifierLength = 255

// allowedEnvironments is the scheduler's default -allowed_job_environments.
var allowedEnvironments = regexp.MustCompile(`^(prod|devel|test|staging[0-9]*)$`)

// ValidateScheduler checks j against the rules by which Aurora's scheduler
// (ConfigurationManager.validateAndPopulate, with its default flags) refuses
// a job the client accepted. It returns nil or a *ValidationError matching
// ErrScheduler. Rules that depend on a cluster's flags (allowed container
// types, Docker parameters, GPUs, tiers) are not checked.
func (j Job) ValidateScheduler() error {
	return newError(ErrScheduler, schedulerProblems(&j, ""))
}

// ValidateScheduler checks every job of the document as Job.ValidateScheduler.
func (d *Document) ValidateScheduler() error {
	var all []Problem
	for i := range d.Jobs {
		all = append(all, schedulerProblems(&d.Jobs[i], d.prefix(i))...)
	}
	return newError(ErrScheduler, all)
}

func goodIdentifier(s string) bool {
	return isIdentifier(s) && len(s) <= maxIdentifierLength
}

func schedulerProblems(j *Job, prefix string) []Problem {
	var ps problems
	at := func(rel string) string {
		if rel == "" {
			return prefix
		}
		return join(prefix, rel)
	}
	a := analyze(j, prefix)
	if j.InstanceCount() <= 0 {
		ps.add(at("instances"), "Instance count must be positive.")
	}
	role, env, name := a.str(a.root, "role"), a.str(a.root, "environment"), a.str(a.root, "name")
	for _, part := range []struct{ attr, value string }{{"role", role}, {"environment", env}, {"name", name}} {
		if !goodIdentifier(part.value) {
			ps.add(at(part.attr), "Job key JobKey(role:%s, environment:%s, name:%s) is invalid.", role, env, name)
			break
		}
	}
	if !allowedEnvironments.MatchString(env) {
		ps.add(at("environment"), "Job environment %s doesn't match: %s", env, `^(prod|devel|test|staging\d*)$`)
	}
	if j.Tier != nil {
		if tier := a.str(a.root, "tier"); !goodIdentifier(tier) {
			ps.add(at("tier"), "Tier contains illegal characters: %s", tier)
		}
	}
	if j.IsService() && j.CronSchedule != nil && a.str(a.root, "cron_schedule") != "" {
		ps.add(at("cron_schedule"), "A service task may not be run on a cron schedule")
	}
	if _, ok := j.Constraints["dedicated"]; ok {
		rel := mapKey("constraints", "dedicated")
		value := j.Constraints["dedicated"]
		if n := a.root.Fields["constraints"].Fields["dedicated"]; n != nil {
			value = a.client.Value(n).Out
		}
		values := strings.Split(strings.TrimPrefix(value, "!"), ",")
		switch {
		case strings.HasPrefix(value, "limit:"):
			ps.add(at(rel), "A dedicated constraint must be of value type.")
		case len(uniq(values)) != 1:
			ps.add(at(rel), "A dedicated constraint must have exactly one value")
		default:
			if owner, _, _ := strings.Cut(values[0], "/"); owner != "*" && owner != role {
				ps.add(at(rel), "Only %s may use hosts dedicated for that role.", owner)
			}
		}
	}
	return ps.list
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
