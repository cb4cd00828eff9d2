// Package executor runs one instance of an Aurora task as Aurora's executor
// does on a node (apache/aurora/executor: aurora_executor.py,
// http_lifecycle.py, common/health_checker.py, common/status_checker.py,
// and the HTTP and shell checks of common/health_check): it starts the task
// with Thermos' runner (package thermos), runs the job's health checker
// beside it, and kills it the executor's way.
//
// What it reproduces:
//   - the health checker: HTTP (GET the endpoint on the port named health,
//     from the announcer's portmap and the task's {{thermos.ports[...]}};
//     the body, stripped and lower-cased, must equal expected_response
//     lower-cased, and the status expected_response_code when non-zero) or
//     shell (shell_command under /bin/bash -c, interpolated with the node's
//     bindings, killed after timeout_secs), a check at once and then every
//     interval_secs, the first ceil(initial_interval_secs/interval_secs)
//     failures forgiven, RUNNING after min_consecutive_successes, the task
//     failed ("Failed health check! REASON") after more than
//     max_consecutive_failures, or when it cannot reach its successes in
//     time; <sandbox>/.healthchecksnooze suspends the checks. A job without
//     a health port and without a shell checker gets the no-op checker;
//   - the kill: the HTTP lifecycle first when the lifecycle's port (health
//     by default) is bound (POST graceful_shutdown_endpoint, wait up to
//     graceful_shutdown_wait_secs while it was answered, the same with
//     shutdown_endpoint), then the runner's kill, escalated to an abort when
//     the runner has not stopped within a minute. A task that fails its
//     health check is killed the same way, and ends FAILED.
//
// What it must never do: run anything but the job's task and its shell
// health check, talk to anything but 127.0.0.1, or return while the task
// or a health check it started is still running.
//
// What it leaves out: setuid of health checks to the job's role, Mesos
// containers and filesystem images, announcing to ZooKeeper, resource
// accounting, and the status updates themselves (they are reported to an
// Observer instead). HTTP checks go to 127.0.0.1, where the runner binds
// the task's ports, where Aurora asks localhost.
package executor
