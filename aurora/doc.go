// Package aurora models Apache Aurora's job configuration (Aurora 0.22, as
// loaded by `aurora job create --read-json`) and the checks by which Aurora
// refuses one, so that a job built from Nix is known to be acceptable before
// it reaches a cluster.
//
// The contract: a document that Parse accepts and whose jobs pass Validate is
// one that Aurora's client accepts; one that Aurora's client rejects fails
// here, for the same reason, in Aurora's words where Aurora has words for it,
// with the JSON path of the offending value. ValidateScheduler adds the rules
// of the scheduler (which the client does not check). Every check reports
// all the problems it finds, not only the first.
//
// Parsing is as strict as pystachio's: an unknown attribute at any level
// ("Unknown schema attribute K"), a null for any attribute, and a value of a
// type pystachio cannot coerce are errors. pystachio coerces scalars, and so
// does Parse, recording a warning: "3", 2.7 (truncated) or true for an
// Integer, "0.5" or true for a Float, "true"/"1"/"false"/"0" or a number for
// a Boolean, a number or boolean for a String (as Python 2.7's unicode()
// prints it). A string with a template written for an attribute that is not
// a string (priority: "{{instances}}") is kept in Job.Templates and coerced
// once interpolated. Parse never rewrites the file: what nix-aurora emits is
// what the author wrote. In a {"jobs": [...]} document other top-level keys
// (hooks...) are ignored, as Aurora's loader ignores them; invalid UTF-8 is
// an error.
//
// Warnings (Document.Warnings, Job.Warnings) report what Aurora accepts but
// an author may not mean: a coerced value, duplicate process names (Thermos
// runs the last), a task without processes, an order naming no process of
// the task (Thermos ignores it). They never make Validate fail.
//
// What this package must never do:
//   - accept what Aurora rejects: where Aurora's behaviour is unclear, the
//     stricter reading wins, and the deviation is documented;
//   - fill in a value that changes a job's meaning: Parse keeps absent
//     attributes absent and json.Marshal of a parsed job omits them again;
//     Defaults fills in only Aurora's own defaults, and never adds a struct
//     whose presence means something (announce, logger, container...);
//   - touch the network or a cluster: it is pure data and rules.
//
// Mustache templates are interpolated by package mustache, as pystachio
// does, in every string of the job: the client's two passes
// (AuroraConfig.job, then convert; so {{&x}} is {{x}} after the first and
// resolved by the second), with Aurora's defaults applied ({{name}},
// {{task.name}}, {{processes[0].name}}, {{task.resources.cpu}},
// {{announce.primary_port}} when announce is present,
// {{executor_config.name}}...) and the standard bindings ({{mesos.role}}
// and {{thermos.user}} are {{role}}, {{mesos.cluster}} is {{cluster}}).
// Outside the task, what is left must be what the node binds
// ({{thermos.ports[NAME]}}, {{thermos.task_id}}, {{mesos.instance}},
// {{mesos.hostname}}), or it is "Config contains unbound variables: ...".
// In the task, as Thermos' validator does: a {{thermos.ports...}} that is
// not [NAME] is a "Bad port specification"; then the node's bindings are
// faked (mesos.instance 31337, mesos.hostname "", the ports the task asks
// for) and anything left is "Unexpected unbound refs: ... Make sure you are
// not nesting template variables.". A malformed reference, a cycle, and a
// reference to a struct, list or map (pystachio would paste its Python
// repr) are refused.
//
// Names are checked as convert checks them: role, environment and the job
// name (defaulted from the task's, itself from the first process's) before
// the node binds anything, against `^[\w\-\.]+$` with Python 2.7's ASCII
// \w; process names with mesos.instance and mesos.hostname bound (31337,
// ""). The announcer's portmap is resolved as PortResolver does ("Found
// cycle in portmap!"; a value Python's int() reads, Unicode digits
// included, is a static port). Only CoordinatorSlaPolicy loads as an
// sla_policy. instances, priority, max_task_failures and limit:N are i32
// in Aurora's API: values outside it fail.
package aurora
