"""The bottom floor: the records that flow through a run, errors, text metrics, escaping and
redaction of server text, atomic files, column tables and progress reporting. Imports nothing
else of raq."""
