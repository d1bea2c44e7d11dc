"""The results layer: reports from the files on disk alone (never an executor's memory): runs, groups,
tables in md/csv/tex/html, plots, the cost table of `vitstudy profile MANIFEST`."""
