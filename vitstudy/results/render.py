"""A report as text: Markdown, LaTeX (booktabs, pure ASCII) and HTML from its laid-out Table, and CSV
from the report itself (raw numbers, one column per quantity, for a spreadsheet or a paper's plots).
"""

from __future__ import annotations

import csv
import html
import io
import math

from vitstudy.results.compare import RowStats
from vitstudy.results.groups import Group, short_axis
from vitstudy.results.runs import COST
from vitstudy.results.table import Report, Table, TableCell
from vitstudy.runfolder import DAMAGED, FAILURES, PENDING

FORMATS = ("md", "csv", "tex", "html")
STATUSES = ("done", *FAILURES, "running", PENDING, DAMAGED)  # the CSV's n_<status> columns, in this order


def render(report: Report, fmt: str) -> str:
    """The report in one of FORMATS."""
    if fmt == "csv":
        return to_csv(report)
    return {"md": to_markdown, "tex": to_latex, "html": to_html}[fmt](report.table())


def to_markdown(t: Table) -> str:
    def cell(c: TableCell) -> str:
        s = f"**{c.text}**" if c.best else c.text
        return s + "".join(f" [{n}]" for n in c.notes)

    lines = ["| " + " | ".join(t.header) + " |",
             "|" + "|".join("---:" if a == "r" else "---" for a in t.align) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in t.rows]
    foot = [f"[{i}] {n}" for i, n in enumerate(t.notes, 1)] + ([t.legend] if t.legend else [])
    if foot:
        lines += [""] + [f + "  " for f in foot[:-1]] + foot[-1:]  # two spaces: a Markdown line break
    return "\n".join(lines) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "±": r"$\pm$", "Δ": r"$\Delta$", "–": "--", "·": r"$\cdot$", "—": "---", "×": r"$\times$",
        "α": r"$\alpha$", "<": r"$<$", ">": r"$>$", "|": r"\textbar{}"}


def tex_escape(s: str) -> str:
    out = "".join(_TEX.get(ch, ch) for ch in s)
    return out.encode("ascii", "replace").decode()  # pdflatex-safe


def to_latex(t: Table) -> str:
    """A booktabs table that compiles as is (\\usepackage{booktabs}); pure ASCII."""

    def cell(c: TableCell) -> str:
        s = tex_escape(c.text)
        s = rf"\textbf{{{s}}}" if c.best else s
        return s + "".join(rf"\textsuperscript{{{n}}}" for n in c.notes)

    lines = [r"\begin{table}[t]", r"\centering", r"\small"]
    if t.title:
        lines.append(rf"\caption{{{tex_escape(t.title)}}}")
    lines += [rf"\begin{{tabular}}{{{''.join(t.align)}}}", r"\toprule",
              " & ".join(tex_escape(h) for h in t.header) + r" \\", r"\midrule"]
    lines += [" & ".join(cell(c) for c in row) + r" \\" for row in t.rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if t.notes or t.legend:
        lines.append(r"\par\smallskip\footnotesize")
        lines += [rf"\textsuperscript{{{i}}}{tex_escape(n)}\par" for i, n in enumerate(t.notes, 1)]
        lines += [tex_escape(t.legend) + r"\par"] if t.legend else []
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_html(t: Table) -> str:
    def cell(c: TableCell) -> str:
        s = html.escape(c.text)
        s = f"<b>{s}</b>" if c.best else s
        return s + "".join(f"<sup>{n}</sup>" for n in c.notes)

    def tag(name: str, a: str) -> str:
        return f'<{name} style="text-align:{"right" if a == "r" else "left"}">'

    out = ["<table>"]
    if t.title:
        out.append(f"<caption>{html.escape(t.title)}</caption>")
    out.append("<thead><tr>" + "".join(f"{tag('th', a)}{html.escape(h)}</th>"
                                       for h, a in zip(t.header, t.align, strict=True)) + "</tr></thead>")
    out.append("<tbody>")
    for row in t.rows:
        tds = "".join(f"{tag('td', a)}{cell(c)}</td>" for c, a in zip(row, t.align, strict=True))
        out.append(f"<tr>{tds}</tr>")
    out.append("</tbody>")
    out.append("</table>")
    out += [f"<p><sup>{i}</sup> {html.escape(n)}</p>" for i, n in enumerate(t.notes, 1)]
    out += [f"<p>{html.escape(t.legend)}</p>"] if t.legend else []
    return "\n".join(out) + "\n"


def to_csv(report: Report) -> str:
    """Raw numbers (no rounding beyond 6 decimals), one column per quantity, one row per group: per
    metric its mean, std, n, best set, Δ to the baseline with CI, p, Holm's p, the test, significance,
    and for a Δ not significant the seeds for 80% power and the smallest Δ detectable now."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    tuned = report.tuned_keys
    head = [short_axis(a) for a in report.axes] + [f"{short_axis(k)}_tuned" for k in tuned]
    head += ["baseline", "n_seeds", "test_size"] + [f"n_{s}" for s in STATUSES]
    for m in report.metrics:
        head += [f"{m}_{q}" for q in METRIC_COLUMNS]
    head += list(COST)
    w.writerow(head)
    for i, g in enumerate(report.groups):
        c = g.counts
        row = [g.label.get(a) for a in report.axes] + [" ".join(map(str, g.tuned(k))) for k in tuned]
        row += [int(g is report.baseline), len(g.runs), _num(g.split_size("test"))]
        row += [c.get(s, 0) for s in STATUSES]
        for m in report.metrics:
            row += _metric_columns(report, g, m, report.stats(m)[i])
        row += [_num(g.cost(k)) for k in COST]
        w.writerow(row)
    return buf.getvalue()


METRIC_COLUMNS = ("mean", "std", "n", "best", "delta", "delta_lo", "delta_hi", "p", "p_holm", "test",
                  "significant", "seeds_for_power", "detectable_delta", "paper", "delta_paper")


def _metric_columns(report: Report, g: Group, m: str, s: RowStats) -> list:
    """The METRIC_COLUMNS of one row and metric (empty where a quantity does not apply)."""
    mean, ref = g.mean(m), g.expect.get(m)
    c = s.vs_base
    tested = ([_num(c.delta), _num(c.lo), _num(c.hi), _p(c.p), _p(s.p_holm), c.test, int(s.significant)]
              if c else [_num(report.delta(g, m)), "", "", "", "", "", ""])
    to_ref = None if ref is None or mean is None else mean - ref
    return ([_num(mean), _num(g.std(m)), len(g.values(m)), int(s.best)] + tested
            + [_num(s.seeds), _num(s.detectable), _num(ref), _num(to_ref)])


def _num(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{x:.6f}".rstrip("0").rstrip(".") if isinstance(x, float) else str(x)


def _p(x: float | None) -> str:
    """A p-value to 6 significant digits (a small one keeps its digits)."""
    return "" if x is None else f"{x:.6g}"
