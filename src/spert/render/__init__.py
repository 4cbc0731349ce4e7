"""Rendering for people to look at: self-contained HTML pages of entities and relations
(:mod:`.pages`, with the CSS and JavaScript they inline from ``templates/``), used for
extraction output, ``spert visualize`` and the evaluation report, and PNG figures
(:mod:`.figures`) for the evaluation and experiment reports."""
