"""README's numbers are the committed tables' (nothing typed by hand), and its first block holds the two set-up
commands."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLES = [ROOT / "benchmarks/runs/fashion-mnist-overfit/reproduce-fashion-mnist-overfit-cnn/table.md",
          ROOT / "benchmarks/runs/multimodal-fmnist/reproduce-multimodal-fmnist-cnn/table.md",
          ROOT / "benchmarks/runs/worth-it.md"]  # regenerated from the studies by benchmarks/worth_it.py (a test)


def section(title: str) -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index(f"## {title}\n")
    end = readme.find("\n## ", start + 1)
    return readme[start:end if end != -1 else None]


def test_the_worth_it_tables_are_rows_of_the_committed_tables():
    committed = [markdown_tables(path.read_text()) for path in TABLES]
    tables = markdown_tables(section("Is ITRA worth it?"))
    assert sum(len(rows) for rows in tables) >= 10
    for rows in tables:  # each README table is a selection of the rows of one committed table, in its order
        source = next((table for tables_of_file in committed for table in tables_of_file if rows[0] in table), None)
        assert source is not None, rows[0]
        assert [row for row in source if row in rows] == rows, rows


def markdown_tables(text: str) -> list[list[str]]:
    """The rows (header included) of each markdown table in `text`."""
    tables: list[list[str]] = []
    previous = ""
    for line in text.splitlines():
        if line.startswith("|"):
            if not previous.startswith("|"):
                tables.append([])
            tables[-1].append(line)
        previous = line
    return tables


def test_the_first_block_holds_the_two_set_up_commands():
    first = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    commands = [line for line in first.splitlines() if line.strip()]
    assert len(commands) == 2 and "itra reproduce" in commands[0] and "pytest" in commands[1]


def test_the_results_so_far_of_today_s_defaults_are_the_committed_main_job():
    committed = markdown_tables((ROOT / "benchmarks/runs/fashion-mnist-table1/reproduce-fashion-mnist-cnn/table.md")
                                .read_text())[0]
    header = [cell.strip() for cell in committed[0].strip("|").split("|")]
    columns = [header.index(name) for name in ("acc (%)", "test CE", "ECE")]
    ours = [[cell.strip().strip("*") for cell in row.strip("|").split("|")] for row in
            markdown_tables(section("Results so far"))[0][2:6]]  # CE, LSR, Center, ITRA-c of today's defaults
    rows = [[cell.strip() for cell in row.strip("|").split("|")] for row in committed[2:]]
    assert [row[0].split(" ")[0] for row in rows] == ["Baseline", "LSR", "Center", "ITRA-c"]
    assert [row[1:] for row in ours] == [[row[i] for i in columns] for row in rows]
