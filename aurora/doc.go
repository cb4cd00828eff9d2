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
// ("Unknown schema attribute K"), a null for any attribute, and a value of the
// wrong type are errors. It is stricter in one way: pystachio coerces
// between scalars ("80" for an Integer, 80 for a String, 1.5 truncated to
// 1); this package refuses them, so that what is validated is what is sent.
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
// Mustache templates are interpolated as pystachio does, in every string of
// the job. A reference resolves against the enclosing structs, innermost
// first (for a cmdline: the process, then the task, then the job), following
// .attr, [index] and [key] steps, with defaults applied: {{name}} (the
// enclosing struct's name), {{role}}, {{cluster}}, {{environment}},
// {{instances}}, {{task.name}}, {{task.resources.cpu}},
// {{processes[0].name}}, {{announce.portmap[aurora]}}... A resolved string is
// interpolated where it was written, and the result scanned again (at most
// 100 rounds). {{mesos.role}} and {{thermos.user}} are {{role}},
// {{mesos.cluster}} is {{cluster}}. Left for the node to bind, and accepted:
// {{thermos.ports[NAME]}}, {{thermos.task_id}}, {{mesos.instance}},
// {{mesos.hostname}}. Anything else is refused: "Config contains unbound
// variables: ...", "Unexpected unbound refs: ..." (a reference that appears
// only once the node binds its own, as {{a[{{thermos.ports[http]}}]}}, or an
// escaped {{&x}}), a malformed reference or port reference, a cycle, and a
// reference to a struct, list or map (pystachio would paste its Python repr).
package aurora
