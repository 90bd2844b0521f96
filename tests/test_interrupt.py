"""Outputs survive interruption: Ctrl-C exits 130 with one line, and never leaves a partial file.

The SIGINT tests run main.py in a subprocess through a small harness that announces (on stdout)
when the run has reached the moment to interrupt: the simulation loop, or the fsync of an output
(which it then holds for a minute, so the signal lands mid-write every time).
"""

from __future__ import annotations

import ast
import json
import os
import signal
import string
import subprocess
import sys
from pathlib import Path

import pytest

from sim.report.output import atomic_write
from tests.conftest import BUNDLED_AZURE, ROOT, atomic_leftovers, interrupted_while_importing

HARNESS = """
import os, sys, time
sys.path.insert(0, {root!r})
import main
from sim.serving import engine

when = sys.argv[1]
if when == "writing":
    def held_fsync(fd):
        print("READY", flush=True)
        time.sleep(60)
    os.fsync = held_fsync
else:
    run = engine.Engine.run
    def announced(self, until=None):
        print("READY", flush=True)
        return run(self, until)
    engine.Engine.run = announced
from sim.command import end_process
end_process(main.main(sys.argv[2:]))  # as main.py ends
"""

PREVIOUS = '{"previous": "report"}\n'


def _sigint_default() -> None:
    """The child takes Ctrl-C as a terminal would deliver it. A test run started in the background by a
    non-interactive shell (`pytest &`, a CI step) inherits SIGINT ignored, and Python then keeps it ignored:
    the interruption under test would never happen."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(tmp_path: Path, when: str, argv: list[str], signum: int = signal.SIGINT) -> subprocess.CompletedProcess:
    """Start the harness, wait for READY, send ``signum``, return the finished process."""
    proc = subprocess.Popen([sys.executable, "-c", HARNESS.format(root=str(ROOT)), when, *argv], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_default)
    try:
        assert proc.stdout.readline().strip() == "READY", proc.stderr.read()
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("signum, status, message", [(signal.SIGINT, 130, "interrupted"),
                                                     (signal.SIGTERM, 143, "terminated")])  # 128 + the signal
@pytest.mark.parametrize("when", ["simulating", "writing"])
def test_sigint_exits_130_and_keeps_the_previous_report(tmp_path, when, signum, status, message):
    """Ctrl-C, and SIGTERM (a scheduler's time limit, ``timeout``) alike: the previous report stays, no partial file."""
    report = tmp_path / "report.json"
    report.write_text(PREVIOUS)
    done = _interrupt(tmp_path, when, ["--workload-trace", str(BUNDLED_AZURE), "--report-json", str(report),
                                       "--report-csv", str(tmp_path / "report.csv"), "--quiet"], signum)
    assert done.returncode == status, done.stderr
    assert done.stderr == f"kvsim: {message}\n"
    assert report.read_text() == PREVIOUS  # the previous file, never a partial new one
    assert not (tmp_path / "report.csv").exists()
    assert atomic_leftovers(tmp_path) == []


@pytest.mark.parametrize("module", ["argparse", "logging", "dataclasses", "sim.cli", "sim.report.output"])
def test_ctrl_c_while_main_loads_its_modules_is_an_interruption(module):
    """From main.py's first import to its last, Ctrl-C ends the run as one anywhere else does."""
    done = interrupted_while_importing(ROOT / "main.py", module)
    assert (done.returncode, done.stderr) == (130, "kvsim: interrupted\n")


@pytest.mark.parametrize("module", ["argparse", "sim.cli", "sim.report.output"])
def test_sigterm_while_main_loads_its_modules_is_a_termination(module):
    """SIGTERM (``timeout``, a batch scheduler) while main.py imports its modules (its first ~0.2 s) ends as one
    anywhere else does: it killed the process (status -15, no line) while the handlers waited for ``command_status``."""
    done = interrupted_while_importing(ROOT / "main.py", module, signal.SIGTERM)
    assert (done.returncode, done.stderr) == (143, "kvsim: terminated\n")


@pytest.mark.parametrize(("signum", "said"), [(None, "interrupted"), (signal.SIGTERM, "terminated")])
# real selections (an --only that picks nothing is refused), stopped before their runs start: one key's, one point's
@pytest.mark.parametrize(("tool", "args"), [
    ("edge_runs.py", ["--only", "serving.enforce_eager"]),
    ("overload_grid.py", ["run", "--only", "multi-turn 5/s out 1000 n40 seed 0", "--out", "{out}"])])
def test_a_stop_while_a_tool_imports_main_is_the_tool_s_one_line(tmp_path, tool, args, signum, said):
    """A tool that imports main inside its command (edge_runs.py and overload_grid.py warm it up before they fork)
    stopped while main's modules load: the tool's one line. main.py's own guard answered too as it was imported, so
    "kvsim: terminated" came first, then the tool's line (1 SIGTERM in 13 sent 0.1-0.4 s into edge_runs.py)."""
    args = [a.format(out=tmp_path / "grid.jsonl") for a in args]
    done = interrupted_while_importing(ROOT / "tools" / tool, "sim.progress", signum, tuple(args))
    assert (done.returncode, done.stderr) == (143 if signum else 130, f"{tool}: {said}\n")


# A command that loads a tool as a module (``runpy``, as edge_runs.py imports main.py), stopped as the tool imports
# ``module``: Ctrl-C raised there, or SIGTERM sent, which the command's handler raises
TOOL_IMPORTED_BY_A_COMMAND = """
import os, runpy, sys
from sim.command import command_status

class Stop:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            {stop}

def body():
    sys.meta_path.insert(0, Stop())
    runpy.run_path({script!r}, run_name="a_tool")
    return 0

sys.exit(command_status("host", body))
"""


@pytest.mark.parametrize(("signum", "said"), [(None, "interrupted"), (signal.SIGTERM, "terminated")])
@pytest.mark.parametrize(("tool", "module"), [("tools/to_mooncake.py", "sim.report.output"),
                                              ("tools/ns3_kv_timing.py", "ns3_flows"),
                                              ("tools/profile_gpu.py", "gpu_timing"),
                                              ("benchmarks/replay_vllm.py", "benchmarks.vllm_run_files")])
def test_a_stop_while_a_command_imports_a_tool_is_the_command_s_one_line(tool, module, signum, said):
    """A tool imported inside another command and stopped as it loads leaves the answer to that command, as main.py
    does (``sim.script_start``'s hook answers for the program only): each tool's own import guard said
    "<tool>: interrupted" (for a SIGTERM too) and exited 130, and the command said its line after it."""
    stop = "raise KeyboardInterrupt" if signum is None else f"os.kill(os.getpid(), {int(signum)})"
    code = TOOL_IMPORTED_BY_A_COMMAND.format(module=module, stop=stop, script=str(ROOT / tool))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (done.returncode, done.stderr) == (143 if signum else 130, f"host: {said}\n")


def test_sigint_while_writing_a_plot_leaves_no_file(tmp_path):
    done = _interrupt(tmp_path, "writing", ["--trace-stats", "--workload-trace", str(BUNDLED_AZURE),
                                            "--plot-dir", str(tmp_path / "plots"), "--quiet"])
    assert done.returncode == 130 and done.stderr == "kvsim: interrupted\n"
    assert list((tmp_path / "plots").iterdir()) == []


def test_atomic_write_interrupted_mid_write_keeps_previous(tmp_path):
    target = tmp_path / "r.csv"
    target.write_text("old\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(target) as fh:
            fh.write("new, half written")
            raise KeyboardInterrupt
    assert target.read_text() == "old\n" and atomic_leftovers(tmp_path) == []


def test_atomic_write_replaces_and_creates_with_the_usual_mode(tmp_path):
    target = tmp_path / "sub" / "r.csv"
    with atomic_write(target) as fh:
        fh.write("a\n")
    with atomic_write(target) as fh:
        fh.write("b\n")
    assert target.read_text() == "b\n" and atomic_leftovers(target.parent) == []
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_write_keeps_links_devices_and_fifos(tmp_path, run_cli):
    """A link's target is replaced, not the link; a FIFO (like /dev/null, a device) is written in
    place: renaming a file over it replaced the node itself (root's --report-json /dev/null)."""
    import threading

    target = tmp_path / "runs" / "r1.json"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "latest.json"
    link.symlink_to(target)
    with atomic_write(link) as fh:
        fh.write("new\n")
    assert link.is_symlink() and target.read_text() == "new\n" and atomic_leftovers(tmp_path) == []

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    status, _, err = run_cli("--trace-stats", "--no-plot", "--quiet", "--workload-trace", str(BUNDLED_AZURE),
                             "--workload-limit", "5", "--report-json", str(fifo))
    reader.join(timeout=30)
    assert status == 0, err
    assert fifo.is_fifo() and '"schema_version": 1' in received[0]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full (a Linux device whose every write fails ENOSPC)")
def test_a_device_that_refuses_the_write_is_named(run_cli):
    """A device written in place that fails (full) is one line naming it, exit 2 (it was a traceback, exit 1)."""
    status, _, err = run_cli("--trace-stats", "--no-plot", "--quiet", "--workload-trace", str(BUNDLED_AZURE),
                             "--workload-limit", "5", "--report-json", "/dev/full")
    assert status == 2 and err.strip() == "kvsim: error: cannot write /dev/full: No space left on device"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full (a Linux device whose every write fails ENOSPC)")
def test_standard_output_on_a_full_disk_is_named(tmp_path):
    """``kvsim ... > FILE`` on a full disk: the summary's print fails (ENOSPC) after every output is written. It was a
    traceback and "internal error", exit 1; now one line, exit 2, and the report is there."""
    report = tmp_path / "r.json"
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--trace-stats", "--no-plot", "--workload-trace",
                               str(BUNDLED_AZURE), "--workload-limit", "5", "--report-json", str(report)],
                              cwd=tmp_path, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (2, "kvsim: error: cannot write to standard output: No space left on "
                                                 "device\n")
    assert json.loads(report.read_text())["trace"]["rows_used"] == 5


def test_report_to_standard_output_through_a_pipe(tmp_path):
    """``--report-json /dev/stdout`` into a pipe: the link ends at a pipe with no name, so the report is
    written in place; plots go to kvsim-plots/, not beside the pipe."""
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--trace-stats", "--quiet", "--workload-trace",
                           str(BUNDLED_AZURE), "--workload-limit", "5", "--report-json", "/dev/stdout"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["mode"] == "trace-stats"
    assert [p.parent.name for p in tmp_path.rglob("*.png")] == ["kvsim-plots"]

def _closed_pipe() -> int:
    """The write end of a pipe whose reader has already gone (``| head -1`` after its line)."""
    read, write = os.pipe()
    os.close(read)
    return write


def test_a_reader_that_goes_away_is_not_an_internal_error(tmp_path):
    """``kvsim ... | head -1``: the summary's print fails (EPIPE) after every output is written. It was a traceback
    and "internal error", exit 1; now no message and the status of a process that SIGPIPE ended (128 + 13)."""
    report = tmp_path / "r.json"
    write = _closed_pipe()
    try:
        done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--trace-stats", "--no-plot", "--workload-trace",
                               str(BUNDLED_AZURE), "--workload-limit", "5", "--report-json", str(report)],
                              cwd=tmp_path, stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert done.returncode == 141 and done.stderr == "", (done.returncode, done.stderr)
    assert json.loads(report.read_text())["trace"]["rows_used"] == 5


@pytest.mark.parametrize("flag", ["--report-json", "--report-csv", "--requests-csv", "--html"])
@pytest.mark.parametrize("target", ["standard output", "another pipe"])
def test_an_output_pipe_whose_reader_went_away_ends_as_sigpipe(tmp_path, flag, target):
    """``kvsim --report-json /dev/stdout | head -c 100``: the reader leaves before the report is written. That was
    "cannot write /dev/stdout: Broken pipe", exit 2 (bad input); a reader gone is the end SIGPIPE gives (141), no
    message, as for the summary's print. The same for a pipe that is not standard output (``/dev/fd/N``)."""
    write = _closed_pipe()
    try:
        path = "/dev/stdout" if target == "standard output" else f"/dev/fd/{write}"
        done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--no-plot", "--quiet", "--workload-trace",
                               str(BUNDLED_AZURE), "--workload-limit", "5", flag, path], cwd=tmp_path,
                              stdout=write if target == "standard output" else subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, timeout=120, pass_fds=(write,))
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (128 + signal.SIGPIPE, "")


def test_bad_input_with_standard_error_gone_still_exits_2(tmp_path):
    """The one-line message cannot be printed (stderr's reader gone): the status still says bad input (it was 1)."""
    write = _closed_pipe()
    try:
        done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--trace-stats", "--no-plot", "--set",
                               "model=gpt-9"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=write, timeout=120)
    finally:
        os.close(write)
    assert done.returncode == 2


def test_every_writer_goes_through_atomic_write():
    """No module writes a file any other way (open for writing, write_text/bytes, savefig to a path)."""
    offenders = []
    for path in [ROOT / "main.py", *sorted((ROOT / "sim").rglob("*.py")), *sorted((ROOT / "trace").rglob("*.py")),
                 *sorted((ROOT / "experiments").rglob("*.py"))]:
        if path.name == "output.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", None))
            modes = [a.value for a in node.args + [k.value for k in node.keywords]
                     if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            writes = (name in ("write_text", "write_bytes")
                      or (name in ("open", "fdopen") and any(set(m) & set("wax") for m in modes if len(m) <= 3))
                      or (name == "savefig" and not (node.args and isinstance(node.args[0], ast.Name)
                                                     and node.args[0].id == "fh")))
            if writes:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


_ENDS_THROUGH_END_PROCESS = """
import atexit, sys
sys.path.insert(0, {root!r})
from sim.command import end_process

class Teardown:
    def __del__(self):
        print("teardown ran")

kept = Teardown()  # a module global: the interpreter's teardown would finalize it
atexit.register(print, "atexit ran")
print("buffered line")  # standard output is a pipe here: block-buffered until the end
end_process({status})
"""


def _buffered() -> dict[str, str]:
    """The environment with standard output block-buffered on a pipe, as Python's default is."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}


@pytest.mark.parametrize("status, code", [(3, 3), (None, 0)])
def test_a_command_ends_without_the_interpreter_teardown(status, code):
    """end_process: atexit handlers run and buffered output is flushed, but the interpreter's teardown (where
    pyarrow's thread pools now and then abort a finished run, apache/arrow#34314) is skipped: a module global's
    finalizer, which sys.exit would run, does not."""
    done = subprocess.run([sys.executable, "-c", _ENDS_THROUGH_END_PROCESS.format(root=str(ROOT), status=status)],
                          capture_output=True, text=True, timeout=60, env=_buffered())
    assert (done.returncode, done.stdout, done.stderr) == (code, "buffered line\natexit ran\n", "")


def test_a_reader_gone_before_the_last_buffered_line_is_sigpipe_status():
    write = _closed_pipe()
    try:
        done = subprocess.run([sys.executable, "-c", _ENDS_THROUGH_END_PROCESS.format(root=str(ROOT), status=0)],
                              stdout=write, stderr=subprocess.PIPE, text=True, timeout=60, env=_buffered())
    finally:
        os.close(write)
    assert done.returncode == 128 + signal.SIGPIPE and done.stderr == ""


@pytest.mark.parametrize("closing", ["closed descriptor", "closed file object"])
def test_a_closed_standard_output_is_not_a_failed_flush(closing):
    """``kvsim ... >&-`` (sys.stdout None) or a closed sys.stdout: nothing is left to flush, and sys.exit ends such a
    process with its own status, 0 here (CPython's flush_std_files skips a None or closed stream); end_process
    made it 120, Python's status for a last flush that failed."""
    script = _ENDS_THROUGH_END_PROCESS.format(root=str(ROOT), status=0)
    if closing == "closed file object":
        script = script.replace("end_process(0)", "sys.stdout.close()\nend_process(0)")
    done = subprocess.run([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True, timeout=60,
                          env=_buffered(), preexec_fn=(lambda: os.close(1)) if closing == "closed descriptor" else None,
                          stdout=None if closing == "closed descriptor" else subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr  # (the script's atexit print to a closed file object is reported)
    plain = subprocess.run([sys.executable, "-c", script.replace("end_process(0)", "sys.exit(0)")],
                           stderr=subprocess.DEVNULL, timeout=60, env=_buffered(),
                           preexec_fn=(lambda: os.close(1)) if closing == "closed descriptor" else None,
                           stdout=None if closing == "closed descriptor" else subprocess.DEVNULL)
    assert plain.returncode == 0  # the status sys.exit gives, which end_process keeps


def _imports(tree: ast.AST) -> set[str]:
    """The top-level packages a module imports anywhere in it."""
    imported = {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    return imported | {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                       for alias in node.names}


def _as_program(text: str) -> ast.Module | None:
    """``text`` parsed as Python, also as a ``str.format`` template (its fields filled with None); None if neither."""
    try:
        return ast.parse(text)
    except SyntaxError:
        pass
    try:
        return ast.parse("".join(literal + ("None" if field is not None else "")
                                 for literal, field, _, _ in string.Formatter().parse(text)))
    except (ValueError, SyntaxError):
        return None


def test_every_child_program_that_loads_the_simulator_ends_through_end_process():
    """A script that runs Python code of its own in a child (``python -c CODE``: bench_trace_load's loader) ends that
    child through end_process too when the code loads kvsim's packages: the child reads traces with pyarrow, the
    teardown abort's very case, and a -6 there fails the benchmark (``loader subprocess failed``)."""
    packages = {"sim", "trace", "learned", "experiments", "main"}
    offenders = []
    for path in [ROOT / "main.py", *sorted(ROOT.glob("*/*.py"))]:
        if path.parts[-2] in {"tests", ".ci"}:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str) and "import" in node.value):
                continue
            child = _as_program(node.value)
            if child is None:
                continue  # text, not a program
            calls = {ast.unparse(call.func) for call in ast.walk(child) if isinstance(call, ast.Call)}
            if _imports(child) & packages and "end_process" not in calls:
                offenders.append(f"{path.relative_to(ROOT).as_posix()}:{node.lineno}")
    assert offenders == []


def test_every_command_that_loads_the_simulator_ends_through_end_process():
    """A script's ``__main__`` block that imports kvsim's packages (pyarrow, numba with them) exits through
    sim.command.end_process, not sys.exit: the abort at teardown is rare (one process in ~200) and no test would
    catch a new script that forgot it."""
    packages = {"sim", "trace", "learned", "experiments", "main"}
    offenders = []
    for path in [ROOT / "main.py", *sorted(ROOT.glob("*/*.py"))]:
        if path.parts[-2] in {"tests", ".ci"}:
            continue
        tree = ast.parse(path.read_text())
        imported = {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                     for alias in node.names}
        # the last ``__main__`` block runs the command (one before it sets up the path or holds the stops)
        blocks = [node for node in tree.body if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)]
        if blocks and imported & packages:
            calls = {ast.unparse(call.func) for call in ast.walk(blocks[-1]) if isinstance(call, ast.Call)}
            if "end_process" not in calls:
                offenders.append(path.relative_to(ROOT).as_posix())
    assert offenders == []


def test_a_profiled_command_still_writes_its_profile(tmp_path):
    """``python -m cProfile -o FILE main.py ...`` (or pdb, coverage's tracer) reports after the script returns:
    under a profiler or tracer end_process exits the ordinary way, so the profile is written."""
    script = tmp_path / "command.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nfrom sim.command import end_process\n"
                      "end_process(3)\n")
    done = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(tmp_path / "out.prof"), str(script)],
                          capture_output=True, text=True, timeout=60)
    assert (tmp_path / "out.prof").stat().st_size > 0, done.stderr  # (cProfile's own status: it swallows SystemExit)
