"""What the test servers share: files written atomically, and the life of a server
process (pid file, ready file with the port, a clean stop on SIGTERM/SIGINT)."""
import os
import signal
import threading


def write_file(path, data, mode=0o644):
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def remove_quietly(path):
    if path:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def read_lines(path):
    """The non-empty lines of a text file, stripped; [] when it does not exist."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
        return []


def append_line(path, line):
    """Appends one line and fsyncs (the challenge store: issued, used)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


class _Stop(Exception):
    pass


def run(build, pidfile, ready_file, log):
    """Runs a server until SIGTERM/SIGINT. build() returns (server, banner), or None
    after logging why it cannot start (exit status 1). The port goes to ready_file
    once the server listens; pid and ready files are removed on the way out."""
    if pidfile:
        write_file(pidfile, b"%d\n" % os.getpid())
    remove_quietly(ready_file)
    server = None

    def stop(signum, frame):
        # Once serving, end the loop from another thread: an exception raised here
        # could land inside socketserver's request handling, be printed there and
        # swallowed, and the server would keep running.
        if server is not None:
            threading.Thread(target=server.shutdown, daemon=True).start()
        else:
            raise _Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        built = build()
        if built is None:
            return 1
        srv, banner = built
        if ready_file:
            write_file(ready_file, b"%d\n" % srv.server_address[1])
        log(banner)
        server = srv
        server.serve_forever()
        log("stopping")
    except _Stop:
        log("stopping")
    finally:
        if server is not None:
            server.server_close()
        remove_quietly(ready_file)
        remove_quietly(pidfile)
    return 0
