"""The container's output is masked at the file-descriptor level (scoring/output_scrub.py): what Python, a
grandchild process (R's PSOCK nodes, `system()`) or raw writes to fd 1/2 put there. Real fork, real pipes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from scoring.output_scrub import KEEP_TAIL, MAX_LINE, LineScrubber

SECRET = "AccountKey=c2VjcmV0a2V5MTIzNDU2Nzg5MA=="
KEY = "c2VjcmV0a2V5MTIzNDU2Nzg5MA=="
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def scrubbed_run(body: str) -> subprocess.CompletedProcess:
    """Run `body` after scrub_process_output() in a fresh interpreter whose environment holds a secret."""
    code = "from scoring.output_scrub import scrub_process_output\nscrub_process_output()\n" + textwrap.dedent(body)
    env = {**os.environ, "SCORING_STORAGE_CONNECTION_STRING": f"DefaultEndpointsProtocol=http;{SECRET};"}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, timeout=60)


def test_everything_written_to_stdout_and_stderr_is_masked_and_the_exit_code_kept():
    done = scrubbed_run("""
        import os, sys
        secret = os.environ["SCORING_STORAGE_CONNECTION_STRING"]
        print("python print", secret)
        sys.stderr.write("python stderr " + secret + "\\n")
        sys.stdout.flush(); sys.stderr.flush()
        os.write(1, b"raw, cut in two: " + secret[:20].encode()); os.write(1, secret[20:].encode() + b"\\n")
        os.system("echo grandchild $SCORING_STORAGE_CONNECTION_STRING")
        os.system("echo to stderr $SCORING_STORAGE_CONNECTION_STRING >&2")
        os.write(2, b"no newline at the end " + secret.encode())
        sys.exit(3)
    """)
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 3, err
    assert KEY not in out + err
    for line in ("python print", "raw, cut in two:", "grandchild"):
        assert line in out
    for line in ("python stderr", "to stderr", "no newline at the end"):
        assert line in err
    assert out.count("***") == 3 and err.count("***") == 3


def test_a_child_killed_by_a_signal_exits_as_a_container_does():
    done = scrubbed_run("""
        import os, signal
        print("about to die", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert done.returncode == 128 + signal.SIGKILL
    assert done.stdout.decode() == "about to die\n"


def test_an_uncaught_exception_keeps_python_s_exit_code_and_its_traceback_is_masked():
    done = scrubbed_run("""
        import os
        raise RuntimeError("cannot connect with " + os.environ["SCORING_STORAGE_CONNECTION_STRING"])
    """)
    err = done.stderr.decode()
    assert done.returncode == 1 and "RuntimeError: cannot connect with" in err and KEY not in err


def test_sigterm_is_forwarded_to_the_child():
    code = textwrap.dedent("""
        import sys, time
        from scoring.output_scrub import scrub_process_output
        scrub_process_output()
        print("ready", flush=True)
        time.sleep(60)
    """)
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE)
    try:
        assert process.stdout.readline() == b"ready\n"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        process.kill()


def test_line_scrubber_finds_a_secret_cut_across_reads_and_bounds_what_it_holds(tmp_path):
    out = tmp_path / "out"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT)
    scrubber = LineScrubber(fd, secrets=(KEY,))
    for piece in ("first ", KEY[:7], KEY[7:], " end\nsecond ", KEY):
        scrubber.feed(piece.encode())
    scrubber.finish()
    scrubber.feed(b"x" * (MAX_LINE + 10))  # no newline: written anyway, its tail kept back
    assert out.stat().st_size > MAX_LINE - KEEP_TAIL
    scrubber.feed(KEY.encode())
    scrubber.finish()
    os.close(fd)
    text = out.read_text()
    assert text.startswith("first *** end\nsecond ***") and KEY not in text
    assert text.count("x") == MAX_LINE + 10 and text.endswith("x***")


def test_only_the_process_entry_point_forks_its_scrubber(monkeypatch):
    # Forking inside another program (a test calling main) would make that program the scrubber, and its
    # child would lose every other thread; only `python -m scoring` (own_process=True) may fork.
    import scoring.__main__ as cli

    forks: list[str] = []
    monkeypatch.setattr(cli, "scrub_process_output", lambda: forks.append("fork"))
    monkeypatch.setattr(cli, "command_run", lambda args: 0)
    assert cli.main(["run"]) == 0 and forks == []
    assert cli.main(["run"], own_process=True) == 0 and forks == ["fork"]
