"""The tests' side of a test double's server process (serving.py is the server's side):
start it on a free 127.0.0.1 port, wait until it listens, read its log, stop it by PID."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def stop_process(proc):
    """Ends a subprocess.Popen by its PID: SIGTERM, SIGKILL when it is still there 10 s
    later; then reaps it. Nothing when it has already exited."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


class ServerProcess:
    """script (a double that serves through serving.run) as a subprocess of this Python,
    started with --port 0, --ready-file and --pidfile (in a directory of its own) and args.
    Returns once it listens, with .port set; raises RuntimeError with its log when it exits
    or is still not listening after start_seconds. stdin and stdout are /dev/null; stderr
    goes to the log (log()). stop() ends it by PID; cleanup() stops it and removes its
    directory (the log with it)."""

    def __init__(self, script, *args, start_seconds=20):
        self.name = os.path.basename(script)
        self.tmp = tempfile.mkdtemp(prefix="%s-run-" % os.path.splitext(self.name)[0])
        self.ready = os.path.join(self.tmp, "ready")
        self.pidfile = os.path.join(self.tmp, "pid")
        self.log_path = os.path.join(self.tmp, "stderr")
        cmd = [sys.executable, script, "--port", "0", "--ready-file", self.ready,
               "--pidfile", self.pidfile] + list(args)
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.log_file)
        deadline = time.monotonic() + start_seconds
        while not os.path.exists(self.ready):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._not_started()
            time.sleep(0.02)
        with open(self.ready) as f:
            self.port = int(f.read())

    def _not_started(self):
        self.stop()
        log = self.log()
        shutil.rmtree(self.tmp, ignore_errors=True)
        raise RuntimeError("%s did not start: %s" % (self.name, log))

    def stop(self):
        """stop_process; returns the exit status."""
        stop_process(self.proc)
        self.log_file.close()
        return self.proc.returncode

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
