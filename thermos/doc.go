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
//     processes), stdin /dev/null, with only HOME (the sandbox), USER and
//     LOGNAME (the current user), the runner's PATH and, when
//     <sandbox>/.thermos_profile exists as the process starts, BASH_ENV
//     pointing at it; stdout and stderr go to
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
//     FINALIZING (the final processes, within what is left of
//     finalization_wait), then SUCCESS, FAILED or KILLED;
//   - the kill (cancelling the context), as the runner does it on the
//     executor's SIGUSR1 (TaskRunner.kill): cleaning, then the final
//     processes, and KILLED, all within a deadline of its own from the kill
//     (Options.KillWait, Thermos' one minute) that replaces
//     finalization_wait, even when the kill comes while cleaning or
//     finalizing. At that deadline what still runs gets SIGKILL: the
//     coordinator's group, the top pid and all its descendants.
//
// What it does differently, on purpose: timing. Thermos' run loop ticks
// about once a second, so a successor starts about a second after its
// predecessor ended and runs of a process with min_duration 1 start about
// 2.1s apart. Here things happen when they are due: a successor starts as
// soon as its predecessors finished, min_duration counts exactly from the
// end of one run to the start of the next, and only a run that was killed
// or lost waits a second before it runs again (so that it cannot spin, as
// Thermos' tick keeps it from doing). Processes runnable at the same time
// start in the task's order here, in an arbitrary one (a Python set) under
// Thermos; with max_concurrency that decides which start first. A job
// should rely on neither.
//
// What it must never do: run anything that is not a cmdline of the job (no
// init, no health check, no hook of its own), write outside the sandbox, or
// return before every coordinator it started has ended and what was left in
// its process group got SIGKILL.
//
// What it leaves out: setuid to the job's role (processes run as the
// current user), chroot, log rotation and other logger destinations (logs
// always go to files), checkpoints and recovery of a runner that died, the
// runner as the subreaper of its orphans (which Thermos sends SIGTERM when
// the task starts cleaning), and the executor's work around the runner
// (health checks, HTTP lifecycle endpoints, announcing). A descendant that
// leaves its process's group (setsid, job control) outlives the process
// when that ends by itself, as under Thermos, and here the task as well
// (on a node, the container's end kills it).
package thermos
