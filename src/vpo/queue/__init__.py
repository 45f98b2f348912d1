"""Processing on other machines: `vpo process --queue URL` enqueues one message per file
on Redis (Dramatiq), `vpo worker` runs them and exports each run's spans over OTLP/HTTP
to `vpo serve`, whose database records them (docs/cli.md, issue #14).

- `message`: what a message holds (the policy, the file and how it was probed).
- `broker`: the Redis broker and the `process_file` actor's options.
- `enqueue`: the enqueuer's side (scan into the server's library, send).
- `handler`: the worker's side (map the path, check the file, run the processor).
"""
