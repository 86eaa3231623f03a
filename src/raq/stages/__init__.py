"""The stages of a run, each asking endpoints for one kind of record: candidates' answers,
judges' rankings (with the planted controls), and generated QA datasets."""
