"""Reading a process's /proc entry only after proving it is the process meant.

A PID is a number that any process may hold: inside a PID namespace the number the
parent sees is looked up in whichever /proc is mounted, and after an exit the number is
reused. Every read here first checks the entry's command line against the program the
caller started, so a figure is either pxguard's or a loud error, never another process's.
"""
import os


class ProcessMismatch(RuntimeError):
    """The /proc entry read is not (or no longer) the process the caller meant."""


class Process:
    """`pid` as seen through `proc_root` (the /proc mounted for its PID namespace),
    expected to run `program` (argv[0] or its basename)."""

    def __init__(self, pid, program, proc_root="/proc"):
        self.pid, self.program, self.proc_root = pid, os.path.basename(program), proc_root
        self.verify()

    def _path(self, name):
        return os.path.join(self.proc_root, str(self.pid), name)

    def argv(self):
        try:
            with open(self._path("cmdline"), "rb") as f:
                return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError as error:
            raise ProcessMismatch(f"pid {self.pid} under {self.proc_root}: cannot read its command line ({error})") from None

    def verify(self):
        """Raises ProcessMismatch unless the entry's argv[0] is the expected program."""
        argv = self.argv()
        if not argv or os.path.basename(argv[0]) != self.program:
            raise ProcessMismatch(f"pid {self.pid} under {self.proc_root} runs {argv[:3] or '(a kernel thread)'}, "
                                  f"not {self.program}: refusing to measure another process")
        return argv

    def status_kib(self, field):
        """A `kB` field of /proc/PID/status (VmRSS, VmHWM), after verifying the process."""
        self.verify()
        with open(self._path("status")) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise ProcessMismatch(f"pid {self.pid}: /proc status has no {field} line")

    def rss_kib(self):
        return self.status_kib("VmRSS")

    def fd_count(self):
        self.verify()
        return len(os.listdir(self._path("fd")))

    def cpu_ticks(self):
        """utime + stime in clock ticks (fields after the command name's last ')')."""
        self.verify()
        with open(self._path("stat")) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
