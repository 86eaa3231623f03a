"""report.html: one self-contained page (inline CSS, plots as data: URIs, no scripts).

It opens offline, can be mailed or kept as a CI artifact, and loads nothing from anywhere.
Every user string (names, errors, config) is escaped: answers and names may hold markup.

The page top to bottom, and the module that writes each part:

- ``page``: the frame (head, CSS) and the order of the sections;
- ``decision``: the run's facts, the alerts, the verdict with its trade-offs and the judges on
  planted controls;
- ``candidates``: mean ranks and speed, speed distributions and cost, thinking;
- ``differences``: which candidates differ (p-values, significant pairs, Dunn–Holm, per judge);
- ``evidence``: the questions, answers and judgments behind each significant pair;
- ``figures``: the plots with their captions;
- ``diagnostics``: can the judges be trusted (position bias, self-consistency, agreement,
  length bias);
- ``appendix``: failures and requests, the resolved config.

``blocks`` holds what the sections share: escaped numbers and p-values, and tables.
"""

from raq.report.html.page import render_html

__all__ = ["render_html"]
