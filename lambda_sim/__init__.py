"""Lambda, simulated on this machine, for the tests, the benchmarks and the cold-start probe:
API Gateway proxy events (events.py), the context object (context.py), the unzipped deployment
package (task_root.py), the handler run in a bare interpreter (runner.py, probe.py), and an
arm64 interpreter under emulation for the arm64 package (arm64.py). Not part of the Lambda zip."""
