// Package thermos runs one instance of an Aurora task on this machine with
// the semantics of Thermos, the runner that Aurora's executor uses on every
// node (apache/thermos/core/runner.py, common/planner.py, core/process.py in
// apache/aurora), so that a job can be tried without a cluster.
//
// What it reproduces:
//   - the process tree: each run of a process has a coordinator, the
//     runner's child, that started a session and runs the cmdline as
//     `/bin/bash -c CMDLINE`, so bash's session and process group are the
//     coordinator's, $PPID is the coordinator (`kill 0` reaches it too, as
//     under Thermos, where the run is then LOST and run again), SIGINT is
//     ignored, and only descriptors 0, 1 and 2 are inherited. A
//     coordinator is this very program executed again (Go cannot fork
//     without exec), recognised by its argv[0] in the package's init; one
//     whose runner died kills its run, since nothing recovers it;
//   - the sandbox: bash runs in the sandbox directory (shared by all
//     processes), with only HOME (the sandbox), USER and LOGNAME (the current user),
//     the runner's PATH and, when <sandbox>/.thermos_profile exists as the
//     process starts, BASH_ENV pointing at it; stdout and stderr go to
//     <sandbox>/.logs/NAME/RUN/stdout and stderr, RUN counting from 0;
//   - the bindings a node gives a cmdline ({{thermos.ports[NAME]}},
//     {{thermos.task_id}}, {{thermos.user}}, {{mesos.instance}},
//     {{mesos.hostname}}) and the job's own attributes, resolved as pystachio
//     does, innermost struct first (process, task, job): {{name}} in a
//     cmdline is the process's name, {{task.name}}, {{role}}, {{instances}}...
//     An unknown binding is an error before anything runs;
//   - Thermos' planner: order constraints (a process starts once all its
//     predecessors finished successfully), regular and final processes
//     planned apart, max_failures (0: forever), min_duration (seconds from
//     the end of one run to the start of the next), daemon (rerun after
//     success), ephemeral (does not hold up the task and is killed when the
//     others are done), the task's max_concurrency and max_failures, and the
//     run limit of 100 runs per process of the production runner;
//   - the stages of a task: ACTIVE, then CLEANING (SIGTERM to the top pid
//     of each process that still runs, that is its bash or what bash
//     exec'd, never to the rest of its tree, which gets SIGKILL once the
//     process ends; SIGKILL to all when finalization_wait expires), then
//     FINALIZING (the
//     final processes, within what is left of finalization_wait), then
//     SUCCESS, FAILED or KILLED;
//   - the kill (cancelling the context), as the runner does it on the
//     executor's SIGUSR1 (TaskRunner.kill): cleaning, then the final
//     processes, and KILLED, all within a deadline of its own from the kill
//     (Options.KillWait, Thermos' one minute) that replaces
//     finalization_wait, even when the kill comes while cleaning or
//     finalizing;
//
// What it must never do: run anything that is not a cmdline of the job (no
// init, no health check, no hook of its own), write outside the sandbox, or
// return while a process it started (or anything left in that process's
// session) is still alive.
//
// What it leaves out: setuid to the job's role (processes run as the
// current user), chroot, log rotation and other logger destinations (logs
// always go to files), checkpoints and recovery of a runner that died, and
// the executor's work around the runner (health checks, HTTP lifecycle
// endpoints, announcing). A descendant that leaves its process's session
// (setsid) and outlives it is out of reach.
package thermos
