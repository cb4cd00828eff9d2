package thermos

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/nix-aurora/nix-aurora/aurora"
	"github.com/nix-aurora/nix-aurora/mustache"
)

// This file expands {{mustache}} references in a task as the job sees
// them on a node, with the interpolation Aurora's validation uses (package
// mustache).

// bindings are what the node provides.
type bindings struct {
	taskID   string
	hostname string
	instance int
	ports    *portAllocator
}

// ErrBinding is wrapped by the error Run returns when a cmdline holds a
// reference that cannot be bound; nothing has run then.
var ErrBinding = errors.New("cannot bind the cmdlines")

// bindTask returns the job's task (with Aurora's defaults) with its
// references expanded where Thermos expands them before it plans: the
// processes' names and cmdlines, and the order constraints. It
// interpolates as Aurora does (the client's two passes, then the node's)
// and fails on anything left unbound.
func bindTask(job aurora.Job, b *bindings) (*aurora.Task, error) {
	j := job.Defaults()
	if j.Task == nil || len(j.Task.Processes) == 0 {
		return nil, errors.New("invalid task: the job has no processes")
	}
	task := job.Values().Fields["task"]
	in := mustache.New(mustache.Strict(), mustache.WithNode(mustache.Node{
		Instance: &b.instance,
		Hostname: &b.hostname,
		TaskID:   &b.taskID,
		Ports:    b.ports.get,
	}))
	var problems []string
	bind := func(v *mustache.Value, what string) *string {
		if v == nil || v.Kind != mustache.Scalar {
			return nil
		}
		s, err := in.String(v)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s %q: %v", what, v.Text, err))
			return nil
		}
		return &s
	}
	bound := *j.Task
	bound.Processes = make([]aurora.Process, len(j.Task.Processes))
	for i, pv := range task.Fields["processes"].Elems {
		p := j.Task.Processes[i]
		label := fmt.Sprintf("process %d", i)
		if p.Name != nil {
			label = "process " + *p.Name
		}
		p.Name = bind(pv.Fields["name"], label+": name")
		p.Cmdline = bind(pv.Fields["cmdline"], label+": cmdline")
		bound.Processes[i] = p
	}
	if cs := task.Fields["constraints"]; cs != nil {
		bound.Constraints = make([]aurora.Constraint, len(cs.Elems))
		for i, cv := range cs.Elems {
			if ov := cv.Fields["order"]; ov != nil {
				order := []string{}
				for k, nv := range ov.Elems {
					if s := bind(nv, fmt.Sprintf("constraint %d: order[%d]", i, k)); s != nil {
						order = append(order, *s)
					}
				}
				bound.Constraints[i].Order = order
			}
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w:\n  %s", ErrBinding, strings.Join(problems, "\n  "))
	}
	return &bound, nil
}

// portAllocator gives each port name a free local TCP port, once per run.
// The listeners stay open until close, so that two names never get the
// same port.
type portAllocator struct {
	ports     map[string]int
	listeners []net.Listener
}

func newPortAllocator() *portAllocator { return &portAllocator{ports: map[string]int{}} }

func (a *portAllocator) get(name string) (int, error) {
	if p, ok := a.ports[name]; ok {
		return p, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("allocate port %s: %w", name, err)
	}
	a.listeners = append(a.listeners, l)
	a.ports[name] = l.Addr().(*net.TCPAddr).Port
	return a.ports[name], nil
}

func (a *portAllocator) close() {
	for _, l := range a.listeners {
		l.Close()
	}
	a.listeners = nil
}
