"""Progress: a bar only on a terminal, a clean summary always."""
import io

from cic_seed.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_no_bar_when_the_stream_is_not_a_terminal():
    stream = io.StringIO()
    with Progress(10, "create", stream=stream) as progress:
        for _ in range(10):
            progress.update()
    assert stream.getvalue() == ""
    assert progress.count == 10 and progress.summary().startswith("10 users in ")


def test_a_bar_on_a_terminal():
    stream = Terminal()
    with Progress(5, "create", stream=stream) as progress:
        progress.update(5)
    assert "create" in stream.getvalue() and "5/5" in stream.getvalue()
    assert progress.elapsed > 0 and progress.rate > 0
