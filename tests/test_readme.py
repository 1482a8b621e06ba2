"""README's numbers are the committed tables' (nothing typed by hand), and its first block holds the two set-up
commands."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLES = [ROOT / "benchmarks/runs/fashion-mnist-overfit/reproduce-fashion-mnist-overfit-cnn/table.md",
          ROOT / "benchmarks/runs/multimodal-fmnist/reproduce-multimodal-fmnist-cnn/table.md"]


def section(title: str) -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index(f"## {title}\n")
    end = readme.find("\n## ", start + 1)
    return readme[start:end if end != -1 else None]


def test_the_worth_it_tables_are_rows_of_the_committed_tables():
    committed = "\n".join(path.read_text() for path in TABLES).splitlines()
    rows = [line for line in section("Is ITRA worth it?").splitlines() if line.startswith("|")]
    assert len(rows) >= 10
    for row in rows:
        assert row in committed, row


def test_the_first_block_holds_the_two_set_up_commands():
    first = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    commands = [line for line in first.splitlines() if line.strip()]
    assert len(commands) == 2 and "itra reproduce" in commands[0] and "pytest" in commands[1]
