"""Every pipe table in the committed markdown renders on GitHub with all its cells.

GitHub (cmark-gfm; GitHub Flavored Markdown, section "Tables (extension)") splits a table row at every `|` that does
not directly follow a backslash, also inside backtick code spans: write a literal pipe in a cell as `\\|` (it renders
as `|`, in code spans too). A header row whose cell count differs from the delimiter row's is not rendered as a table
at all; a body row with more cells loses the extra ones without a warning, one with fewer gets empty cells. So every
row of a table must have as many cells as its delimiter row.
"""
import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DELIMITER_ROW = re.compile(r"^\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
FENCE = re.compile(r"^(`{3,}|~{3,})")
# A line that starts another block ends a table, even without a blank line before it: a heading, quote, fence, list
# item, thematic break or HTML block (an HTML comment such as the end marker of a cog block, a block-level tag,
# or a tag alone on its line). Any other non-blank line is one more row, pipes or not.
HTML_BLOCK_TAGS = ("address|article|aside|blockquote|details|dialog|div|dl|figure|footer|form|h[1-6]|header|hr|li|"
                   "main|nav|ol|p|pre|script|section|style|summary|table|tbody|td|textarea|tfoot|th|thead|tr|ul")
BLOCK_START = re.compile(r"^(#{1,6}(\s|$)|>|`{3,}|~{3,}|[-*+]\s|\d{1,9}[.)]\s|(-\s*){3,}$|(\*\s*){3,}$|(_\s*){3,}$"
                         r"|<!--|<\?|<![A-Za-z]|</?(" + HTML_BLOCK_TAGS + r")(\s|/?>|$)"
                         r"|</?[A-Za-z][A-Za-z0-9-]*[^<>]*>\s*$)", re.IGNORECASE)


def split_cells(row: str) -> list:
    """The cells of one table row as GitHub splits them: at each `|` not directly after a backslash, with one
    optional leading and one optional trailing pipe."""
    row = row.strip()
    cells, cell, prev = [], "", ""
    for ch in row:
        if ch == "|" and prev != "\\":
            cells.append(cell)
            cell = ""
        else:
            cell += ch
        prev = ch
    cells.append(cell)
    if row.startswith("|"):
        cells = cells[1:]
    if len(cells) > 1 and re.search(r"(^|[^\\])\|$", row):
        cells = cells[:-1]
    return [c.strip() for c in cells]


def table_problems(text: str) -> list:
    """(line number, message) for each table row whose cell count differs from its delimiter row's."""
    lines = text.splitlines()
    problems, fence, i = [], None, 0
    while i < len(lines):
        stripped = lines[i].strip()
        m = FENCE.match(stripped)
        if fence is not None:  # inside a fenced code block: no tables
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and stripped.strip(fence[0]) == "":
                fence = None
            i += 1
            continue
        if m:
            fence = m.group(1)
            i += 1
            continue
        is_table = (i > 0 and "|" in stripped and DELIMITER_ROW.match(stripped) and lines[i - 1].strip()
                    and not BLOCK_START.match(lines[i - 1].strip()))  # the header row is a paragraph line
        if not is_table:
            i += 1
            continue
        width = len(split_cells(stripped))
        header = len(split_cells(lines[i - 1]))
        i += 1
        if header != width:
            problems.append((i - 1, f"header row has {header} cells, delimiter row {width}: not rendered as a table"))
            continue
        while (i < len(lines) and lines[i].strip() and not BLOCK_START.match(lines[i].strip())
               and not lines[i].startswith("    ")):  # 4-space indent: an indented code block
            n = len(split_cells(lines[i]))
            if n != width:
                what = "the extra ones are dropped" if n > width else "padded with empty cells"
                problems.append((i + 1, f"row has {n} cells, the table {width} ({what}; escape a literal | as \\|)"))
            i += 1
    return problems


def committed_markdown():
    out = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return sorted(path for path in out.splitlines() if path)


# ---- the counting, on strings ----

def test_split_cells_counts_like_github():
    assert split_cells("| a | b |") == ["a", "b"]
    assert split_cells("a | b") == ["a", "b"]  # leading and trailing pipes are optional
    assert split_cells("| a | b") == ["a", "b"]
    assert split_cells("|-|-|") == ["-", "-"]
    assert split_cells("| a |  |") == ["a", ""]  # an empty cell is a cell
    assert split_cells(r"| a \| b | c |") == [r"a \| b", "c"]  # escaped pipe: one cell
    assert split_cells(r"| `x \| y` | c |") == [r"`x \| y`", "c"]  # escaped inside a code span: one cell
    assert split_cells("| `x | y` | c |") == ["`x", "y`", "c"]  # a bare pipe splits even inside a code span
    assert split_cells("| a | b \\|") == ["a", "b \\|"]  # the last pipe is escaped: no trailing delimiter


def test_table_problems_flags_a_split_cell():
    text = "# t\n\n| a | b |\n|-|-|\n| 1 | 2 |\n| `x|y` | 3 |\n| 4 |\n\nafter | the table\n"
    assert [line for line, _ in table_problems(text)] == [6, 7]
    assert "3 cells, the table 2" in table_problems(text)[0][1]


def test_table_problems_header_mismatch_and_code_fences():
    assert table_problems("| a | b | c |\n|-|-|\n| 1 | 2 |\n")[0][0] == 1  # header 3 cells, delimiter 2
    fenced = "```\n| a | b |\n|-|-|\n| 1 | 2 | 3 |\n```\n"
    assert table_problems(fenced) == []  # not a table inside a code block
    assert table_problems("| a | b |\n|-|-|\n| 1 \\| 2 | 3 |\n## next\n| x |\n") == []
    assert table_problems("| a | b |\n|-|-|\n| 1 | 2 |\n<!-- [[[end]]] -->\n") == []  # an HTML comment ends the table
    assert table_problems("| a | b |\n|-|-|\n| 1 | 2 |\nmore text\n")[0][0] == 4  # a row of 1 cell, not a paragraph


def test_a_broken_table_in_a_file_fails(tmp_path):
    path = tmp_path / "broken.md"
    path.write_text("| setting | flags |\n|-|-|\n| rtu | `--rtu-variant nonlinear|linear` |\n")
    assert table_problems(path.read_text()) == [(3, "row has 3 cells, the table 2 (the extra ones are dropped; "
                                                    "escape a literal | as \\|)")]
    path.write_text("| setting | flags |\n|-|-|\n| rtu | `--rtu-variant nonlinear\\|linear` |\n")
    assert table_problems(path.read_text()) == []


# ---- the repository ----

def test_committed_markdown_tables_have_consistent_cell_counts():
    files = committed_markdown()
    assert files, "git ls-files found no markdown"
    failures = []
    for path in files:
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            failures += [f"{path}:{line}: {msg}" for line, msg in table_problems(f.read())]
    assert not failures, "markdown tables that GitHub renders wrong:\n" + "\n".join(failures)
