"""One benchmark's table written out: Markdown (with the notes), booktabs LaTeX, and a
standalone HTML page for the Snakemake report (group-average rows in bold)."""

import html

import pandas as pd

MISSING = "–"
AVERAGE = "average"


def to_markdown(table: pd.DataFrame, title: str, sources: list[str], notes: list[str] = ()) -> str:
    lines = [f"# {title}", "", table.to_markdown(index=False, disable_numparse=True), ""]
    if sources:
        lines += [f"Paper columns: {', '.join(sources)} (see reference/README.md).", ""]
    lines += [f"- {note}" for note in notes] + ([""] if notes else [])
    return "\n".join(lines)


HTML_STYLE = (
    "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;font-size:14px}"
    "th,td{padding:3px 10px;text-align:right;border-bottom:1px solid #ddd}"
    "th{border-bottom:2px solid #333}td:nth-child(-n+2),th:nth-child(-n+2){text-align:left}"
    "tr.average td{font-weight:bold;background:#f4f4f4}"
)


def to_html(table: pd.DataFrame, title: str, sources: list[str], notes: list[str] = ()) -> str:
    """A standalone page for the Snakemake report (average rows in bold)."""
    lines = table.to_html(index=False, escape=True, border=0).split("\n")
    marked = []
    for index, line in enumerate(lines):
        # pandas writes "<tr>", then one "<td>" line per cell: the second cell is the language.
        following = lines[index + 2].strip() if index + 2 < len(lines) else ""
        marked.append(
            line.replace("<tr>", '<tr class="average">')
            if line.strip() == "<tr>" and following == f"<td>{AVERAGE}</td>"
            else line
        )
    note = f"<p>Paper columns: {', '.join(sources)} (see reference/README.md).</p>" if sources else ""
    note += "".join(f"<p>{html.escape(line)}</p>" for line in notes)
    title = html.escape(title)
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{HTML_STYLE}</style></head>\n<body><h2>{title}</h2>\n"
        + "\n".join(marked)
        + f"\n{note}</body></html>\n"
    )


LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIALS.get(char, char) for char in text)


def to_latex(table: pd.DataFrame, title: str, sources: list[str]) -> str:
    """A booktabs table (needs \\usepackage{booktabs}); missing cells as "--"."""
    caption = title + (f". Paper columns: {', '.join(sources)}." if sources else "")
    return table.replace(MISSING, "--").to_latex(
        index=False,
        escape=True,
        column_format="ll" + "r" * (len(table.columns) - 2),
        caption=latex_escape(caption),  # pandas escapes the cells, not the caption
        label=f"tab:{title.split()[0].lower()}",
    )
