"""Progress bars draw on a terminal and nowhere else (findap.progress_bars)."""
import io

from findap.progress_bars import progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def drawn(stream, enabled: bool = True) -> str:
    for _ in progress_bar(range(50), enabled=enabled, file=stream, desc="scoring", mininterval=0):
        pass
    return stream.getvalue()


def test_a_bar_draws_on_a_terminal():
    assert "scoring" in drawn(Terminal()) and "50/50" in drawn(Terminal())


def test_a_bar_writes_nothing_into_a_file_or_pipe():
    assert drawn(io.StringIO()) == ""


def test_a_bar_the_caller_turned_off_never_draws():
    assert drawn(Terminal(), enabled=False) == ""
