package executor

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/nix-aurora/nix-aurora/aurora"
	"github.com/nix-aurora/nix-aurora/mustache"
)

// config is what the executor reads of a job: its health_check_config and
// lifecycle, Aurora's defaults filled in. The numbers are read before the
// task starts; the strings once it is active, when the node's bindings
// (ports, task id) are known, as the executor interpolates them.
type config struct {
	root     *mustache.Value
	client   *mustache.Interpolator
	instance int
	hostname string

	initial, interval, timeout float64 // seconds
	maxFailures, minSuccesses  int64
	shell                      bool // a shell checker (else HTTP, or no-op without a health port)

	lifecycle               bool // lifecycle.http is present
	gracefulWait, abortWait time.Duration
}

func readConfig(job aurora.Job, instance int, hostname string) (*config, error) {
	c := &config{root: job.Values(), client: mustache.New(), instance: instance, hostname: hostname}
	// The numbers may be templates ("{{mesos.instance}}"); the executor
	// reads them after binding the instance and host.
	in := c.node("", nil)
	hc := field(c.root, "health_check_config")
	var err error
	num := func(v *mustache.Value, what string) float64 {
		if err != nil {
			return 0
		}
		var f float64
		f, err = number(in, v, what)
		return f
	}
	c.initial = num(field(hc, "initial_interval_secs"), "health_check_config.initial_interval_secs")
	c.interval = num(field(hc, "interval_secs"), "health_check_config.interval_secs")
	c.timeout = num(field(hc, "timeout_secs"), "health_check_config.timeout_secs")
	c.maxFailures = int64(num(field(hc, "max_consecutive_failures"), "health_check_config.max_consecutive_failures"))
	c.minSuccesses = int64(num(field(hc, "min_consecutive_successes"), "health_check_config.min_consecutive_successes"))
	c.shell = field(hc, "health_checker", "shell") != nil

	if http := field(c.root, "lifecycle", "http"); http != nil {
		c.lifecycle = true
		c.gracefulWait = time.Duration(num(field(http, "graceful_shutdown_wait_secs"), "lifecycle.http.graceful_shutdown_wait_secs") * float64(time.Second))
		c.abortWait = time.Duration(num(field(http, "shutdown_wait_secs"), "lifecycle.http.shutdown_wait_secs") * float64(time.Second))
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// checkable reports why the health checker cannot run, before the task
// starts: Aurora's checker divides by interval_secs.
func (c *config) checkable() error {
	if c.interval <= 0 {
		return fmt.Errorf("health_check_config.interval_secs %v: Aurora's health checker divides by it and fails the task (or pass no health checks)", c.interval)
	}
	return nil
}

// forgivenAttempts is how many first checks may fail unnoticed:
// math.ceil(initial_interval_secs / interval_secs), as
// ThreadedHealthChecker counts the grace period in attempts.
func (c *config) forgivenAttempts() int64 {
	return int64(math.Ceil(c.initial / c.interval))
}

// node is the client's interpolation with the node's bindings; a port not
// in ports stays unbound.
func (c *config) node(taskID string, ports map[string]int) *mustache.Interpolator {
	n := mustache.Node{Instance: &c.instance, Hostname: &c.hostname, Ports: func(name string) (int, error) {
		if p, ok := ports[name]; ok {
			return p, nil
		}
		return 0, mustache.ErrUnbound
	}}
	if taskID != "" {
		n.TaskID = &taskID
	}
	return c.client.On(n)
}

// field is the value at the path below v, nil if absent.
func field(v *mustache.Value, path ...string) *mustache.Value {
	for _, name := range path {
		if v == nil || v.Kind != mustache.Struct && v.Kind != mustache.Map {
			return nil
		}
		v = v.Fields[name]
	}
	return v
}

// str interpolates the scalar v; what cannot be bound stays as written, as
// pystachio leaves it.
func str(in *mustache.Interpolator, v *mustache.Value) string {
	if v == nil || v.Kind != mustache.Scalar {
		return ""
	}
	return in.Value(v).Out
}

func number(in *mustache.Interpolator, v *mustache.Value, what string) (float64, error) {
	if v == nil || v.Kind != mustache.Scalar {
		return 0, fmt.Errorf("%s: missing", what)
	}
	r := in.Value(v)
	if len(r.Errs) > 0 || len(r.Unbound) > 0 {
		return 0, fmt.Errorf("%s %q: cannot be read before the task starts", what, v.Text)
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(r.Out), 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q: %w", what, r.Out, err)
	}
	return f, nil
}

// ports is the task's portmap as the executor resolves it (resolve_ports,
// PortResolver.resolve): the announcer's portmap, its values interpolated,
// overridden by the ports the task was given, each name followed to a
// number through the names it maps to. Names that lead to no number, or
// into a cycle, are left out.
func (c *config) ports(taskID string, assigned map[string]int) map[string]int {
	in := c.node(taskID, assigned)
	portmap := map[string]string{}
	if pm := field(c.root, "announce", "portmap"); pm != nil && pm.Kind == mustache.Map {
		for _, name := range pm.Names {
			portmap[name] = strings.TrimSpace(str(in, pm.Fields[name]))
		}
	}
	for name, p := range assigned {
		portmap[name] = strconv.Itoa(p)
	}
	out := map[string]int{}
	for name := range portmap {
		root := name
		visited := map[string]bool{}
		for {
			next, named := portmap[root]
			if !named || visited[root] {
				break
			}
			visited[root] = true
			if p, err := strconv.Atoi(next); err == nil { // Python's int()
				out[name] = p
				break
			}
			root = next
		}
	}
	return out
}
