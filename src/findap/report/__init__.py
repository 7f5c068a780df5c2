"""findap.report: the report of one or several runs (leaderboard, FinCap view, costs, plots) and the `report` stage.

collect.py        reading per-task result files (TaskResult)
layout.py         table order (split, relation, capability, domain), display scales, skill-vs-format scores
intervals.py      a cell's 95% interval and a task's paired difference between two models
board.py          the leaderboard as data (Row, Leaderboard; leaderboard.json)
leaderboard.py    building it: task rows, group averages, FinCap cells, task sets
multiplicity.py   counting the paired tests and the holm / bh adjustment of their marks
run_logs.py       stage costs, loss curves and decontamination notes from run directories
novelty.py        trained / similar / novel per task, from what the run's curation trained on
cells.py          what one score cell says (value, interval, delta, constant answer, second line)
tables.py         the tables a page shows, format-free (columns, rows, cells)
legend.py         the words around the tables: key, methods, comparisons, relations, significance summary
markdown_page.py  report.md;  html_page.py: report.html;  plots.py: the PNG plots
build.py          build_report: all of the above into one output folder
stage.py          the `report` stage of `findap run`;  config.py: its recipe section
"""
