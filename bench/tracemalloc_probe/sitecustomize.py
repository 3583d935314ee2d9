"""Where the operator's memory goes: tracemalloc in a running operator, by signal.

Not part of any bench's table; the profile behind the memory work in
docs/scale.md. Python imports ``sitecustomize`` at start-up, so with this file
on the operator's path (copy it into the venv's site-packages: the bench sets
the operator's PYTHONPATH itself) and ``MEMPROBE_OUT`` set, every operator
process (``... run --metrics-port ...``) starts with two signal handlers:

* SIGUSR1 starts tracing (``MEMPROBE_FRAMES`` frames, 8 by default). Start it
  after start-up, so that imports are not counted and the ramp is not slowed
  more than it must be (tracing from the first import made N=300 time out);
* SIGUSR2 writes ``$MEMPROBE_OUT.<pid>.txt``: what is still allocated since
  tracing started, by file, by line and by traceback.

For example, with ``bench.scale_report --objects 300 --canaries 0 --rest 60``:
send SIGUSR1 when it prints "300 objects in 10 namespaces" and SIGUSR2 in the
rest window. Remove the file from site-packages afterwards.
"""

import os
import sys

OUT = os.environ.get("MEMPROBE_OUT")
if OUT and "run" in sys.argv and "--metrics-port" in sys.argv:
    import linecache
    import signal
    import tracemalloc

    def _start(signum: int, frame: object) -> None:
        tracemalloc.start(int(os.environ.get("MEMPROBE_FRAMES", "8")))

    def _dump(signum: int, frame: object) -> None:
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        with open(f"{OUT}.{os.getpid()}.txt", "w") as out:
            by_file = snapshot.statistics("filename")
            out.write(f"total traced {sum(s.size for s in by_file) / 2**20:.1f} MiB\n\n")
            out.write("== by file\n")
            for stat in by_file[:40]:
                name = stat.traceback[0].filename
                out.write(f"{stat.size / 2**10:10.0f} KiB {stat.count:8d} {name}\n")
            out.write("\n== by line\n")
            for stat in snapshot.statistics("lineno")[:60]:
                where = stat.traceback[0]
                code = linecache.getline(where.filename, where.lineno).strip()[:100]
                out.write(
                    f"{stat.size / 2**10:10.0f} KiB {stat.count:8d}"
                    f" {where.filename}:{where.lineno} {code}\n"
                )
            out.write("\n== by traceback (top 30)\n")
            for stat in snapshot.statistics("traceback")[:30]:
                out.write(f"\n{stat.size / 2**10:10.0f} KiB {stat.count:8d}\n")
                for line in stat.traceback.format()[-16:]:
                    out.write(f"   {line}\n")

    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _dump)
